#pragma once
// The body of coca-shard for one rank: reads, decodes, resizes and tokenises its work items
// on a thread pool, validates captions, and writes shards in item order (so the output does
// not depend on the thread count). Bad inputs are skipped and counted by reason in a
// SkipReport. Shards are written under temporary names and renamed into place only when
// complete (publish_shard_files; see shard_convert.h), so no reader sees a half-written shard.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "coca/data/resample.h"
#include "coca/data/shard.h"
#include "coca/data/shard_inputs.h"
#include "coca/data/tokenizer.h"

namespace coca {

class SkipReport {
 public:
  static constexpr size_t kExamplesPerReason = 5;
  // Counts skipped samples only; the caller counts them as considered too.
  void add(const std::string& reason, const std::string& key, const std::string& detail, int64_t samples = 1);
  // A problem found while listing the inputs (a malformed CSV row, a tar member without its
  // pair): one sample considered and skipped, so that considered = written + skipped.
  void add_listing_issue(const InputIssue& issue);
  void merge(const SkipReport& other);
  int64_t skipped() const;
  int64_t count(const std::string& reason) const;
  const std::map<std::string, int64_t>& counts() const { return counts_; }
  nlohmann::json to_json() const;
  static SkipReport from_json(const nlohmann::json& j);
  std::string summary() const;  // multi-line, for the terminal

  int64_t considered = 0;  // samples looked at: written + skipped
  int64_t written = 0;

 private:
  std::map<std::string, int64_t> counts_;
  std::map<std::string, std::vector<nlohmann::json>> examples_;
};

// Format 2 (layout.image_format jpeg): which images are stored as given and how the rest
// are re-encoded (coca-shard --reencode). "Fits" means the longer side is at most
// layout.image_size (--max-side); an image that does not fit is resized to fit first.
enum class Reencode {
  automatic,  // JPEG (not CMYK), PNG and WebP that fit: as given; the rest: lossless sources
              // (PNG, lossless WebP) as PNG, lossy ones (JPEG, lossy WebP) as JPEG
  jpeg,       // JPEGs (not CMYK) that fit: as given; everything else as JPEG
  png,        // everything decoded and encoded as PNG
};
Reencode parse_reencode(const std::string& name);
const char* reencode_name(Reencode r);

struct BuildOptions {
  std::string out_dir;
  ShardLayout layout;
  int64_t samples_per_shard = 1000;
  int threads = 1;
  const BpeTokenizer* tokenizer = nullptr;  // tokens when set (layout.context_length > 0)
  ResampleFilter filter = ResampleFilter::bicubic;
  Reencode reencode = Reencode::automatic;
  // Quality of the images re-encoded as JPEG. 90: the loader's crops at 224 px from
  // 256-512 px images cannot show quality-90 artefacts, while 95+ costs about 40% more bytes.
  int jpeg_quality = 90;
  int rank = 0;
  bool progress = true;
  // Temporary shards are <out_dir>/<temp_prefix>shard-NNNNN.h5; empty: ".tmp-r<rank>-".
  std::string temp_prefix;
};

struct LocalShards {
  std::vector<std::string> temp_paths;  // closed, complete files under temporary names
  std::vector<int64_t> counts;
};

// Shards from items given a block at a time (a stream of any length, memory bounded by a
// block): each block is decoded on the thread pool and written in order, so the output does
// not depend on the thread count. Destroyed before finish(), it removes its temporaries.
class ShardBuilder {
 public:
  explicit ShardBuilder(const BuildOptions& options);
  ~ShardBuilder();
  ShardBuilder(const ShardBuilder&) = delete;
  ShardBuilder& operator=(const ShardBuilder&) = delete;
  void add(const std::vector<WorkItem>& items, SkipReport& report);
  LocalShards finish();
  size_t block_items() const;  // a block size that keeps every thread busy

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Writes the items' shards (one ShardBuilder, with progress lines). On an exception the
// temporary files made so far are removed.
LocalShards build_shards(const std::vector<WorkItem>& items, const BuildOptions& options, SkipReport& report);

// Renames temp_paths[i] to final_paths[i].
void publish_shard_files(const std::vector<std::string>& temp_paths, const std::vector<std::string>& final_paths);


// The folder in an output directory that holds an unfinished conversion's state.
constexpr const char* kConversionDirName = ".coca-shard";

// Removes what a previous run left in <dir>: shard-*.h5, temporary shards, index.json,
// report.json, the conversion state. Returns how many entries were removed.
int remove_previous_output(const std::string& dir);
// True when <dir> holds anything remove_previous_output would remove.
bool has_previous_output(const std::string& dir);

}  // namespace coca
