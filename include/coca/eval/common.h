#pragma once
// Pieces every evaluation (and the trainer's zero-shot) shares: the model options of the
// coca-eval subcommands, the tokenizer a shard set names, and the reader of an eval set.
#include <boost/program_options/options_description.hpp>
#include <memory>
#include <string>

#include "coca/data/loader.h"
#include "coca/model/coca.h"

namespace coca::eval {

// --model / --model-config / --weights, and the model they describe with its weights loaded.
struct ModelArgs {
  std::string model = "coca_tiny", model_config, weights;
  void add_to(boost::program_options::options_description& desc);
  std::unique_ptr<CoCa> load() const;
};

// The tokenizer to use: `given` if set, else the file the shard index names (absolute, or
// relative to the shard directory); throws naming `what` when there is none.
std::string resolve_tokenizer(const std::string& given, const ShardIndex& index, const std::string& dir,
                              const char* what);

// An in-order reader of `dir` at the model's image size, this rank's contiguous part.
EvalOptions reader_options(const CoCa& model, const std::string& dir, int batch_size, int rank, int world);

}  // namespace coca::eval
