#pragma once
// ShardLoader: streams one rank's samples from a shard set into training batches. A reader
// thread follows the SampleStream order (contiguous chunk reads into a shuffle buffer);
// worker threads decode each batch: random-resized-crop (scale 0.9-1.0, ratio 3/4-4/3,
// antialiased bilinear, bicubic optional), optional colour jitter and grayscale,
// normalisation with CLIP's mean/std, float32 [B, 3, H, W]; batches wait in order ahead of
// the trainer. Everything random comes from coca::Generator seeded by (seed, epoch,
// rank[, sample position]), so batches depend only on (seed, epoch, rank, world size) and
// state()/restore() resume exactly. Rank and world size are plain ints: no communicator.
//
// Shards of format 2 hold encoded images: the workers decode them (JPEG through TurboJPEG at
// the smallest DCT scale that still covers the crop, other formats through decode_image) and
// crop the whole image. Captions are tokenized by the workers when the shards hold no tokens.
//
// EvalReader: a classification shard set in order, with labels, centre-crop only (format 2:
// OpenCLIP's eval transform, shorter side resized to H then the centred H x H).
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "coca/data/color_jitter.h"
#include "coca/data/multi_source.h"
#include "coca/data/resample.h"
#include "coca/data/sample_stream.h"
#include "coca/data/shard_index.h"
#include "coca/data/tokenizer.h"
#include "coca/tensor/tensor.h"

namespace coca {

namespace detail {
class ChunkSource;
}

constexpr float kClipMean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
constexpr float kClipStd[3] = {0.26862954f, 0.26130258f, 0.27577711f};

struct LoaderOptions {
  std::string dir;               // shard set (holds index.json), or several as 'A::B' (multi_source.h)
  // Resampled mode with several sets: each set's weight (OpenCLIP's upsampling factors);
  // empty: every shard alike.
  std::vector<double> upsampling_factors;
  int rank = 0;
  int world = 1;
  int batch_size = 32;
  uint64_t seed = 0;
  int image_size = 0;            // output H = W; 0: the shards' S
  bool augment = true;           // random-resized-crop; false: resize only
  double scale_min = 0.9, scale_max = 1.0;
  double ratio_min = 3.0 / 4.0, ratio_max = 4.0 / 3.0;
  // Antialiased bilinear by default: at the small scale changes of a 0.9-1.0 crop it is
  // visually indistinguishable from bicubic and about 40% cheaper (see the benchmark).
  ResampleFilter filter = ResampleFilter::bilinear;
  // OpenCLIP's colour jitter and random grayscale after the crop (only when `augment`); off by
  // default.
  ColorAugmentParams color;
  int shuffle_buffer = 1000;     // samples; <= 1 keeps chunk order
  bool shuffle_chunks = true;
  int threads = 2;               // decode/augment workers
  int prefetch = 2;              // batches kept ready beyond the workers' own
  bool resampled = false;        // shards drawn with replacement, endlessly
  int64_t epoch_samples = 0;     // samples per epoch over all ranks (0: index total; not resampled: at most)
  bool skip_bad_shards = false;  // warn and skip a shard that fails to read, instead of failing
  // Text. Shards without a tokens dataset have their captions tokenized by the workers with
  // `tokenizer` at `context_length`. Either way the constructor refuses a set that cannot
  // serve the model: stored tokens of another length than context_length, or token ids
  // (the index's tokenizer, else `tokenizer`) beyond vocab_size. 0 / null: unchecked.
  std::shared_ptr<const BpeTokenizer> tokenizer;
  int context_length = 0;
  int64_t vocab_size = 0;
  std::string model_name = "the model";  // for those messages
  std::array<float, 3> mean{kClipMean[0], kClipMean[1], kClipMean[2]};  // normalisation
  std::array<float, 3> std{kClipStd[0], kClipStd[1], kClipStd[2]};
};

// The checks described at LoaderOptions::tokenizer, for a set with `index`; throws an Error
// naming both numbers.
void check_text_fits(const ShardIndex& index, const LoaderOptions& options);

struct Batch {
  Tensor images;                  // f32 [B, 3, H, W]
  Tensor tokens;                  // i32 [B, L]; undefined when the shards have no tokens
  Tensor labels;                  // i32 [B]; undefined unless a classification set
  std::vector<std::string> keys;  // source identifiers
  std::vector<int64_t> indices;   // global sample index: shard offset in the index + row
  std::vector<int64_t> source_counts;  // samples from each source of LoaderOptions::dir
  int64_t epoch = 0;
  int64_t step = 0;               // batch number within the epoch
};

// Position after the last batch handed out, plus the shards skipped so far this epoch, and
// the earlier segments of the epoch when it was resumed with another world or batch size.
struct LoaderState {
  int64_t epoch = 0;
  int64_t batch = 0;  // within the current segment
  std::vector<SkippedShard> skipped;
  std::vector<StreamSegment> segments;
  nlohmann::json to_json() const;
  static LoaderState from_json(const nlohmann::json& j);
  // The state a rank of a new world starts from, given every old rank's state (saved with
  // `old_batch_size` per rank): the same epoch, continued as a new segment without the
  // samples the old ranks took.
  static LoaderState continue_elsewhere(const std::vector<LoaderState>& old_ranks, int old_batch_size);
};

class ShardLoader {
 public:
  explicit ShardLoader(LoaderOptions options);
  ~ShardLoader();
  ShardLoader(const ShardLoader&) = delete;
  ShardLoader& operator=(const ShardLoader&) = delete;

  const ShardIndex& index() const { return index_; }
  const TrainSources& sources() const { return sources_; }
  // Batches per rank of a whole epoch (no earlier segments).
  int64_t batches_per_epoch(int64_t epoch) const;
  // Batches per rank of the current epoch's current segment (after start_epoch or restore).
  int64_t batches_this_epoch() const { return total_; }
  // Positions at batch 0 of `epoch`.
  void start_epoch(int64_t epoch);
  // The next batch of the current epoch; false when the epoch is over.
  bool next(Batch& out);
  LoaderState state() const;
  // Continues exactly where `state` was taken (same options and world size required).
  void restore(const LoaderState& state);

 private:
  struct Sample;
  struct RawBatch;
  void stop_threads();
  void launch(int64_t epoch, int64_t first_batch, const std::vector<SkippedShard>& known_skips,
              const std::vector<StreamSegment>& segments);
  void producer_main(int64_t epoch, int64_t first_batch, std::vector<SkippedShard> known_skips);
  void worker_main();
  void fail(std::exception_ptr e);

  LoaderOptions opt_;
  TrainSources sources_;
  ShardIndex index_;
  StreamConfig cfg_;
  std::vector<int64_t> shard_offset_;
  int out_size_ = 0;
  bool tokenize_ = false;  // captions tokenized by the workers (the shards hold no tokens)

  int64_t epoch_ = 0;
  int64_t consumed_batches_ = 0;  // batches handed out this epoch (segment)
  int64_t total_ = 0;      // batches this epoch
  std::vector<SkippedShard> skipped_;  // as known when the last handed-out batch was made
  std::vector<StreamSegment> segments_;     // earlier segments of this epoch
  std::unique_ptr<ConsumedSet> consumed_;   // what they emitted (null: none)
  int64_t consumed_count_ = 0;              // samples they emitted, repeats included

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::exception_ptr error_;
  std::vector<std::unique_ptr<RawBatch>> jobs_;          // produced, not yet taken by a worker
  std::map<int64_t, std::unique_ptr<Batch>> ready_;      // finished, by step
  std::map<int64_t, std::vector<SkippedShard>> skips_at_;  // skip list as of each batch
  int64_t produced_ = 0;
  // Image tensors of earlier batches, reused once nobody else holds them: a fresh 40 MB
  // tensor per batch costs more in page faults than the whole transform.
  std::vector<Tensor> image_pool_;
  Tensor take_image_tensor(const Shape& shape);
  std::thread producer_;
  std::vector<std::thread> workers_;
};

struct EvalOptions {
  std::string dir;
  int batch_size = 64;
  int image_size = 0;   // 0: the shards' S
  ResampleFilter filter = ResampleFilter::bicubic;
  int rank = 0;         // a contiguous 1/world of the samples, for distributed evaluation
  int world = 1;
  int64_t max_samples = 0;  // read only the set's first max_samples samples (0: all)
  std::array<float, 3> mean{kClipMean[0], kClipMean[1], kClipMean[2]};  // normalisation
  std::array<float, 3> std{kClipStd[0], kClipStd[1], kClipStd[2]};
};

class EvalReader {
 public:
  explicit EvalReader(EvalOptions options);
  ~EvalReader();
  EvalReader(const EvalReader&) = delete;
  EvalReader& operator=(const EvalReader&) = delete;
  const ShardIndex& index() const { return index_; }
  const std::vector<std::string>& classnames() const { return index_.classnames; }
  int64_t size() const { return end_ - begin_; }  // samples this rank reads
  // Next batch in shard order (the last may be short); false at the end.
  bool next(Batch& out);
  void reset() { pos_ = begin_; }

 private:
  EvalOptions opt_;
  ShardIndex index_;
  std::vector<int64_t> shard_offset_;
  int64_t begin_ = 0, end_ = 0, pos_ = 0;
  int out_size_ = 0;
  int64_t step_ = 0;
  std::unique_ptr<detail::ChunkSource> source_;  // keeps the current shard open
};

}  // namespace coca
