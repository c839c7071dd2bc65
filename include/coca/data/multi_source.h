#pragma once
// Several shard sets read as one training set, as OpenCLIP writes it: --train-data 'A::B'
// with --train-data-upsampling-factors 1::4. The sets' indexes are joined into one (shards
// of A, then of B, by absolute path), so the loader's epoch plan, resume and elastic
// continuation work unchanged: without resampling an epoch visits every sample of every
// source once; with resampling each shard is drawn with the weight of its source (OpenCLIP's
// meaning: a source's share of draws is factor x its shard count, normalised).
#include <cstdint>
#include <string>
#include <vector>

#include "coca/data/shard_index.h"

namespace coca {

struct TrainSources {
  std::vector<std::string> dirs;          // as given
  std::vector<int64_t> samples;           // per source
  std::vector<int32_t> shard_source;      // per shard of `index`: which source it is from
  ShardIndex index;                       // joined; one source: that set's own index
  size_t size() const { return dirs.size(); }
};

// "A::B" -> {A, B}; an empty part is an error naming the spec.
std::vector<std::string> split_sources(const std::string& spec);
// "1::4" -> {1, 4}: one positive number per source; `flag` names the option in errors.
std::vector<double> parse_upsampling_factors(const std::string& spec, size_t sources, const std::string& flag);
// Loads and joins the sets. They must agree on what a batch is made of (image format and
// size, stored tokens, tokenizer vocabulary, labels); a disagreement is one error naming
// both sets and the field.
TrainSources load_train_sources(const std::string& spec);
// Each shard's weight for resampled draws: its source's factor (empty factors: uniform).
std::vector<double> shard_weights(const TrainSources& sources, const std::vector<double>& factors);

}  // namespace coca
