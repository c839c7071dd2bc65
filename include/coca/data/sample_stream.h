#pragma once
// The order in which one rank sees samples in one epoch, decided from the index alone (no
// pixel is read here), so that it can be replayed to any point for an exact resume.
//
// Rule (documented in data_tools/README.md):
//  * Shards are permuted per epoch with a generator seeded from (seed, epoch), identical on
//    every rank; rank r takes the shards at positions r, r+W, r+2W, ... of the permutation.
//    More ranks than shards is an error unless resampling.
//  * Each shard is read chunk by chunk (contiguous rows, chunk_images at a time), chunks in
//    a per-(seed, epoch, rank) random order; each chunk's rows enter a shuffle buffer; once
//    the buffer holds more than `buffer` samples a uniformly drawn one leaves it.
//  * Every rank yields batches_per_epoch = min over ranks of floor(samples of its shards / B)
//    batches (and at most floor(epoch_samples / (W * B)) when epoch_samples is set); the rest
//    of each rank's stream is dropped. No sample appears twice.
//  * Resampled mode: each rank draws shards with replacement from (seed, epoch, rank),
//    endlessly (uniformly, or by shard_weights); an epoch is then floor(epoch_samples / (W * B))
//    batches per rank.
//  * Segments: a run resumed mid-epoch with another world size or batch size continues the
//    epoch as a new segment. The samples that earlier segments emitted (found by replaying
//    them from the index) are excluded from the new segment's streams, which otherwise follow
//    the rules above with the new W and B; so no sample of the epoch repeats and none that
//    was still unread is lost (beyond the usual lockstep remainder). Resampled segments
//    continue the epoch's sample count instead.
#include <cstdint>
#include <functional>
#include <vector>

#include "coca/data/shard_index.h"
#include "coca/tensor/random.h"

namespace coca {

struct SampleRef {
  int32_t shard = 0;
  int64_t row = 0;
  bool operator==(const SampleRef& o) const { return shard == o.shard && row == o.row; }
};

struct StreamConfig {
  uint64_t seed = 0;
  int rank = 0;
  int world = 1;
  int batch_size = 1;
  int shuffle_buffer = 1000;
  int chunk_rows = 16;            // rows read at once (the shard's HDF5 chunk)
  bool shuffle_chunks = true;
  bool resampled = false;
  int64_t epoch_samples = 0;      // samples per epoch over all ranks (0: index total; not resampled: at most)
  // Resampled mode: each shard's weight in the draws (empty: uniform). Several --train-data
  // sources with upsampling factors give their shards their source's factor.
  std::vector<double> shard_weights;
};

// A shard skipped after a read failure: from chunk `chunk` (its ordinal in this rank's read
// order for the epoch) on. Recorded so that a resumed run skips it at the same point.
struct SkippedShard {
  int32_t shard = 0;
  int64_t visit = 0;  // which visit of this rank's plan (0-based) the failure happened in
  int64_t chunk = 0;  // ordinal of the failing chunk within that visit
};

// Samples of one epoch already emitted by earlier segments (one bit per sample of the index).
class ConsumedSet {
 public:
  explicit ConsumedSet(const ShardIndex& index);
  void add(const SampleRef& r);
  bool contains(const SampleRef& r) const;
  int64_t in_shard(int32_t shard) const { return per_shard_[static_cast<size_t>(shard)]; }
  int64_t size() const { return total_; }

 private:
  std::vector<int64_t> offset_;     // first global index of each shard
  std::vector<uint64_t> bits_;
  std::vector<int64_t> per_shard_;  // consumed samples per shard (distinct)
  int64_t total_ = 0;
};

// One finished part of an epoch: the world and batch size it ran with, how many batches
// every rank took (lockstep), and the shards each rank skipped by then.
struct StreamSegment {
  int world = 1;
  int batch_size = 1;
  int64_t batches = 0;
  std::vector<std::vector<SkippedShard>> skipped;  // [world]
  int64_t samples() const { return static_cast<int64_t>(world) * batch_size * batches; }  // all ranks
};

uint64_t mix_seed(uint64_t a, uint64_t b, uint64_t c = 0, uint64_t d = 0);
std::vector<int32_t> shard_permutation(int64_t num_shards, uint64_t seed, int64_t epoch);
std::vector<int32_t> shards_of_rank(const std::vector<int32_t>& permutation, int rank, int world);
// The lockstep batch count of an epoch (same on every rank): the one function that both the
// loader (when its epoch ends) and the trainer (its step plan) use. `consumed` and
// `consumed_count` describe earlier segments of the epoch (nullptr / 0 for a whole epoch).
int64_t batches_per_epoch(const ShardIndex& index, const StreamConfig& cfg, int64_t epoch,
                          const ConsumedSet* consumed = nullptr, int64_t consumed_count = 0);
// Samples the segments emitted, over all their ranks (repeats after skipped shards included).
int64_t segment_samples(const std::vector<StreamSegment>& segments);
// Replays the segments (index only, no pixels) and returns what they emitted. `base` gives
// the seed and the read settings; each segment its own world and batch size.
ConsumedSet replay_segments(const ShardIndex& index, const StreamConfig& base, int64_t epoch,
                            const std::vector<StreamSegment>& segments);

class SampleStream {
 public:
  struct ChunkRead {
    int32_t shard;
    int64_t start, count;  // rows
    int64_t visit, chunk;  // where in the read order (see SkippedShard)
  };
  // Reads a chunk: returns false when it failed and the shard is to be skipped.
  using ChunkReader = std::function<bool(const ChunkRead&)>;
  // Whether `c` is one of the `known` skips (a replay or resume skips it at the same point).
  static bool is_known_skip(const std::vector<SkippedShard>& known, const ChunkRead& c);

  // `consumed`: samples that earlier segments of this epoch emitted (kept alive by the caller);
  // `segment`: how many segments came before (mixed into the order so segments differ).
  SampleStream(const ShardIndex& index, const StreamConfig& cfg, int64_t epoch, const ConsumedSet* consumed = nullptr,
               int64_t consumed_count = 0, int64_t segment = 0);
  int64_t target() const { return target_; }   // samples this rank yields this epoch
  int64_t emitted() const { return emitted_; }
  // Next sample, calling `read` for every chunk that enters the buffer first. Returns false
  // after target() samples.
  bool next(SampleRef& out, const ChunkReader& read);
  // Samples read but not yet emitted (what a restore must reload).
  const std::vector<SampleRef>& buffered() const { return buffer_; }
  // What earlier segments emitted and this stream leaves out (null: nothing; always for resampled).
  const ConsumedSet* excluded() const { return consumed_; }
  const std::vector<SkippedShard>& skipped() const { return skipped_; }

 private:
  bool read_next_chunk(const ChunkReader& read);
  void start_shard(int32_t shard);
  int32_t draw_shard();

  const ShardIndex& index_;
  StreamConfig cfg_;
  int64_t epoch_;
  const ConsumedSet* consumed_ = nullptr;
  int64_t target_ = 0;
  int64_t emitted_ = 0;
  Generator order_gen_;                 // chunk order and shuffle draws
  std::vector<int32_t> plan_;           // this rank's shards (non-resampled)
  size_t plan_pos_ = 0;
  int64_t visit_ = 0;                   // passes over plan_ (second only after skips)
  int64_t chunk_ordinal_ = 0;           // chunks begun in this visit
  int32_t current_shard_ = -1;
  std::vector<int64_t> chunk_order_;    // starts of the current shard's remaining chunks
  size_t chunk_pos_ = 0;
  std::vector<SampleRef> buffer_;
  std::vector<SkippedShard> skipped_;
  std::vector<char> bad_;               // shards found bad this epoch
  std::vector<double> cumulative_weight_;  // resampled with shard_weights: running sums
  bool exhausted_ = false;
};

}  // namespace coca
