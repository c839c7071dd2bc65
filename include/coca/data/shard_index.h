#pragma once
// The shard set's index.json: what a reader needs to plan an epoch without opening every
// shard (per-shard sample counts), plus provenance (source, tokenizer, command). The file
// layout is documented in data_tools/README.md.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace coca {

constexpr int kShardFormatVersion = 1;          // images stored decoded (image_format "raw")
constexpr int kShardFormatVersionEncoded = 2;   // images stored encoded (image_format "jpeg")
constexpr const char* kShardFormatName = "coca-shards";

struct ShardEntry {
  std::string file;  // relative to the index's directory
  int64_t samples = 0;
};

struct ShardIndex {
  int format_version = kShardFormatVersion;
  int64_t total_samples = 0;
  std::vector<ShardEntry> shards;
  // "raw" (format 1: decoded S x S pixels) or "jpeg" (format 2: encoded files); every shard
  // of a set is the same, and the loader refuses a shard that disagrees with its index.
  std::string image_format = "raw";
  int image_size = 0;   // raw: S; jpeg: the longest side stored (coca-shard --max-side)
  int chunk_images = 0;
  std::string compression = "none";
  // Per-chunk checksum of the shards: "fletcher32" (what this build writes, hence the
  // default) or "none" (an index from before checksums, which lacks the field).
  std::string checksum = "fletcher32";
  int context_length = 0;               // 0: no tokens dataset
  nlohmann::json tokenizer;             // null or {file, sha256, vocab_size, sot, eot, pad}
  nlohmann::json source;                // {format, path, ...}
  std::string command;
  std::vector<std::string> classnames;  // classification sets only
  nlohmann::json extra;                 // free-form (skip counts, etc.)

  bool has_labels() const { return !classnames.empty(); }
  // tokenizer.vocab_size, the bound for token ids in the shards; 0 when the index names no
  // tokenizer (nothing to check against).
  int64_t vocab_size() const;
  std::string shard_path(const std::string& dir, size_t i) const;
  nlohmann::json to_json() const;
  static ShardIndex from_json(const nlohmann::json& j, const std::string& where);
  // Reads <dir>/index.json, checking the format and that the counts add up.
  static ShardIndex load(const std::string& dir);
  // Writes <dir>/index.json atomically (temporary file, then rename).
  void save(const std::string& dir) const;
};

// "shard-00042.h5"
std::string shard_file_name(int64_t i);

}  // namespace coca
