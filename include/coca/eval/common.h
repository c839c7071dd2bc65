#pragma once
// Pieces every evaluation (and the trainer's zero-shot) shares: the model options of the
// coca-eval subcommands, the tokenizer a shard set names, and the reader of an eval set.
#include <boost/program_options/options_description.hpp>
#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "coca/data/loader.h"
#include "coca/model/coca.h"

namespace coca::dist {
class MpiCommunicator;
}

namespace coca::eval {

// Parses a subcommand's argv against `desc`. With --help: prints `usage`, then the options,
// and returns false. Otherwise checks required options and returns true.
bool parse_subcommand(int argc, char** argv, const boost::program_options::options_description& desc,
                      const char* usage);

// Runs `body` with MPI initialised (world size 1 without a launcher). An error on one rank of
// several aborts the whole job naming the rank, so no peer is left waiting in a collective.
int run_on_ranks(const char* what, const std::function<void(dist::MpiCommunicator&)>& body);

// Writes `j` (indented) to `path`; throws naming the file when the write fails.
void write_json_file(const std::string& path, const nlohmann::json& j, int indent = 2);

// --model / --model-config / --weights, and the model they describe with its weights loaded.
struct ModelArgs {
  std::string model = "coca_tiny", model_config, weights;
  std::string device = "auto", precision = "auto";  // --device / --precision (see coca/dist/device.h)
  std::string image_mean, image_std;  // override the config's preprocess_cfg ("R,G,B")
  // with_device: also offer --device and --precision (subcommands that run on a GPU).
  void add_to(boost::program_options::options_description& desc, bool with_device = false);
  // Reads the config and weights, then moves the model to --device (GPU <local_rank> for cuda).
  std::unique_ptr<CoCa> load(int local_rank = 0, int local_size = 1) const;
};

// The tokenizer to use: `given` if set, else the file the shard index names (absolute, or
// relative to the shard directory). When neither is there and the model's vocabulary is
// OpenCLIP's 49,408 tokens (`model_vocab`), OpenCLIP's own file where users have it
// (find_clip_tokenizer), with `note` saying which file was taken; otherwise throws naming
// `what` and, for the CLIP vocabulary, where to put the file.
std::string resolve_tokenizer(const std::string& given, const ShardIndex& index, const std::string& dir,
                              const char* what, int64_t model_vocab = 0, std::string* note = nullptr);

// An in-order reader of `dir` at the model's image size, this rank's contiguous part.
EvalOptions reader_options(const CoCa& model, const std::string& dir, int batch_size, int rank, int world);

}  // namespace coca::eval
