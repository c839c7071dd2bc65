#include "coca/data/multi_source.h"

#include <cmath>
#include <filesystem>

#include "coca/tensor/error.h"

namespace fs = std::filesystem;

namespace coca {

namespace {

std::vector<std::string> split_on(const std::string& spec, const std::string& what) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    const size_t sep = spec.find("::", start);
    parts.push_back(spec.substr(start, sep == std::string::npos ? std::string::npos : sep - start));
    COCA_CHECK(!parts.back().empty(), what, " '", spec, "': an empty entry (write A::B)");
    if (sep == std::string::npos) break;
    start = sep + 2;
  }
  return parts;
}

// How two indexes name their tokenizers, comparably: by sha256 when both give it, else by
// vocabulary size.
std::pair<std::string, std::string> tokenizer_identities(const ShardIndex& a, const ShardIndex& b) {
  const bool sha = a.tokenizer.is_object() && a.tokenizer.contains("sha256") && b.tokenizer.is_object() &&
                   b.tokenizer.contains("sha256");
  auto id = [&](const ShardIndex& i) {
    if (!i.tokenizer.is_object()) return std::string("none");
    return sha ? "sha256 " + i.tokenizer.value("sha256", std::string()) : str_cat("of ", i.vocab_size(), " tokens");
  };
  return {id(a), id(b)};
}

}  // namespace

std::vector<std::string> split_sources(const std::string& spec) { return split_on(spec, "--train-data"); }

std::vector<double> parse_upsampling_factors(const std::string& spec, size_t sources, const std::string& flag) {
  const std::vector<std::string> parts = split_on(spec, flag);
  COCA_CHECK(parts.size() == sources, flag, " '", spec, "' gives ", parts.size(), " factors for ", sources,
             " --train-data sources");
  std::vector<double> out;
  for (const auto& p : parts) {
    char* end = nullptr;
    const double v = std::strtod(p.c_str(), &end);
    COCA_CHECK(end != p.c_str() && *end == '\0' && std::isfinite(v) && v > 0, flag, " '", spec, "': '", p,
               "' is not a positive number");
    out.push_back(v);
  }
  return out;
}

TrainSources load_train_sources(const std::string& spec) {
  TrainSources s;
  s.dirs = split_sources(spec);
  if (s.dirs.size() == 1) {
    s.index = ShardIndex::load(s.dirs[0]);
    s.samples = {s.index.total_samples};
    s.shard_source.assign(s.index.shards.size(), 0);
    return s;
  }
  for (size_t k = 0; k < s.dirs.size(); ++k) {
    const ShardIndex idx = ShardIndex::load(s.dirs[k]);
    if (k == 0) {
      s.index = idx;
      s.index.shards.clear();
      s.index.total_samples = 0;
    }
    const ShardIndex& first = s.index;
    auto agree = [&](const char* field, const std::string& a, const std::string& b) {
      COCA_CHECK(a == b, "--train-data: ", s.dirs[k], " has ", field, " ", b, " but ", s.dirs[0], " has ", a,
                 "; the sources of one run must agree on it (re-shard one of them)");
    };
    agree("image_format", first.image_format, idx.image_format);
    agree("image_size", std::to_string(first.image_size), std::to_string(idx.image_size));
    agree("context_length (stored tokens)", std::to_string(first.context_length), std::to_string(idx.context_length));
    const auto [tok_first, tok_this] = tokenizer_identities(first, idx);
    agree("a tokenizer", tok_first, tok_this);
    agree("classnames", nlohmann::json(first.classnames).dump(), nlohmann::json(idx.classnames).dump());
    for (size_t i = 0; i < idx.shards.size(); ++i) {
      s.index.shards.push_back({fs::absolute(idx.shard_path(s.dirs[k], i)).lexically_normal().string(),
                                idx.shards[i].samples});
      s.shard_source.push_back(static_cast<int32_t>(k));
    }
    s.index.total_samples += idx.total_samples;
    s.samples.push_back(idx.total_samples);
  }
  s.index.source = {{"format", "sources"}, {"dirs", s.dirs}};
  return s;
}

std::vector<double> shard_weights(const TrainSources& sources, const std::vector<double>& factors) {
  if (factors.empty()) return {};
  COCA_CHECK(factors.size() == sources.size(), "upsampling factors: ", factors.size(), " for ", sources.size(),
             " sources");
  std::vector<double> w;
  for (int32_t src : sources.shard_source) w.push_back(factors[static_cast<size_t>(src)]);
  return w;
}

}  // namespace coca
