#include "coca/data/sample_stream.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "coca/tensor/error.h"

namespace coca {

uint64_t mix_seed(uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
  // splitmix64 finaliser over the parts, order-sensitive.
  uint64_t h = 0x9e3779b97f4a7c15ull;
  for (uint64_t v : {a, b, c, d}) {
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
    h ^= h >> 31;
  }
  return h;
}

std::vector<int32_t> shard_permutation(int64_t num_shards, uint64_t seed, int64_t epoch) {
  std::vector<int32_t> p(static_cast<size_t>(num_shards));
  for (int64_t i = 0; i < num_shards; ++i) p[static_cast<size_t>(i)] = static_cast<int32_t>(i);
  Generator g(mix_seed(seed, static_cast<uint64_t>(epoch), 0x5a4d5045524dull));
  for (int64_t i = num_shards - 1; i > 0; --i) std::swap(p[static_cast<size_t>(i)], p[g.below(static_cast<uint64_t>(i) + 1)]);
  return p;
}

std::vector<int32_t> shards_of_rank(const std::vector<int32_t>& permutation, int rank, int world) {
  std::vector<int32_t> mine;
  for (size_t i = static_cast<size_t>(rank); i < permutation.size(); i += static_cast<size_t>(world))
    mine.push_back(permutation[i]);
  return mine;
}

static void check_config(const ShardIndex& index, const StreamConfig& cfg) {
  COCA_CHECK(cfg.world >= 1 && cfg.rank >= 0 && cfg.rank < cfg.world, "loader: rank ", cfg.rank,
             " is not in a world of ", cfg.world);
  COCA_CHECK(cfg.batch_size >= 1, "loader: batch size must be positive");
  COCA_CHECK(!index.shards.empty(), "loader: the shard set has no shards");
  // Resampling draws shards until it has read enough samples: it needs a shard that has some.
  COCA_CHECK(!cfg.resampled || std::any_of(index.shards.begin(), index.shards.end(),
                                           [](const ShardEntry& s) { return s.samples > 0; }),
             "loader: resampled mode draws samples from the shards, and every shard of the set is empty");
  COCA_CHECK(cfg.resampled || static_cast<int64_t>(index.shards.size()) >= cfg.world, "loader: ", cfg.world,
             " ranks but only ", index.shards.size(),
             " shards: every rank needs at least one shard per epoch (make more, smaller shards with "
             "coca-shard --samples-per-shard, or use resampled mode)");
}

ConsumedSet::ConsumedSet(const ShardIndex& index) : offset_(index.shards.size() + 1, 0), per_shard_(index.shards.size(), 0) {
  for (size_t i = 0; i < index.shards.size(); ++i) offset_[i + 1] = offset_[i] + index.shards[i].samples;
  bits_.assign(static_cast<size_t>((offset_.back() + 63) / 64), 0);
}

void ConsumedSet::add(const SampleRef& r) {
  const int64_t g = offset_[static_cast<size_t>(r.shard)] + r.row;
  uint64_t& word = bits_[static_cast<size_t>(g / 64)];
  const uint64_t bit = uint64_t{1} << (g % 64);
  if (word & bit) return;  // a repeat (a second visit after skipped shards)
  word |= bit;
  ++per_shard_[static_cast<size_t>(r.shard)];
  ++total_;
}

bool ConsumedSet::contains(const SampleRef& r) const {
  const int64_t g = offset_[static_cast<size_t>(r.shard)] + r.row;
  return (bits_[static_cast<size_t>(g / 64)] >> (g % 64)) & 1;
}

int64_t batches_per_epoch(const ShardIndex& index, const StreamConfig& cfg, int64_t epoch, const ConsumedSet* consumed,
                          int64_t consumed_count) {
  check_config(index, cfg);
  if (cfg.resampled) {
    const int64_t samples = cfg.epoch_samples > 0 ? cfg.epoch_samples : index.total_samples;
    return std::max<int64_t>(samples - consumed_count, 0) / (static_cast<int64_t>(cfg.world) * cfg.batch_size);
  }
  const auto perm = shard_permutation(static_cast<int64_t>(index.shards.size()), cfg.seed, epoch);
  int64_t best = std::numeric_limits<int64_t>::max();
  for (int r = 0; r < cfg.world; ++r) {
    int64_t n = 0;
    for (int32_t s : shards_of_rank(perm, r, cfg.world))
      n += index.shards[static_cast<size_t>(s)].samples - (consumed ? consumed->in_shard(s) : 0);
    best = std::min(best, n / cfg.batch_size);
  }
  // --train-num-samples shortens an epoch (OpenCLIP's meaning); it cannot lengthen one here,
  // since no sample repeats within an epoch.
  if (cfg.epoch_samples > 0)
    best = std::min(best, std::max<int64_t>(cfg.epoch_samples - consumed_count, 0) /
                              (static_cast<int64_t>(cfg.world) * cfg.batch_size));
  return best;
}

int64_t segment_samples(const std::vector<StreamSegment>& segments) {
  int64_t n = 0;
  for (const auto& g : segments) n += g.samples();
  return n;
}

ConsumedSet replay_segments(const ShardIndex& index, const StreamConfig& base, int64_t epoch,
                            const std::vector<StreamSegment>& segments) {
  ConsumedSet consumed(index);
  int64_t count = 0;
  for (size_t k = 0; k < segments.size(); ++k) {
    const StreamSegment& seg = segments[k];
    COCA_CHECK(seg.world >= 1 && seg.batch_size >= 1 && seg.batches >= 0 &&
                   seg.skipped.size() == static_cast<size_t>(seg.world),
               "loader: segment ", k, " of epoch ", epoch, " in the saved state is malformed");
    ConsumedSet next = consumed;
    for (int r = 0; r < seg.world; ++r) {
      StreamConfig cfg = base;
      cfg.world = seg.world;
      cfg.rank = r;
      cfg.batch_size = seg.batch_size;
      SampleStream stream(index, cfg, epoch, &consumed, count, static_cast<int64_t>(k));
      const auto& known = seg.skipped[static_cast<size_t>(r)];
      auto dry = [&](const SampleStream::ChunkRead& c) { return !SampleStream::is_known_skip(known, c); };
      SampleRef ref;
      for (int64_t i = 0; i < seg.batches * seg.batch_size; ++i) {
        COCA_CHECK(stream.next(ref, dry), "loader: cannot replay segment ", k, " of epoch ", epoch, " to batch ",
                   seg.batches, " (a different shard set?)");
        next.add(ref);
      }
    }
    count += seg.samples();
    consumed = std::move(next);
  }
  return consumed;
}

bool SampleStream::is_known_skip(const std::vector<SkippedShard>& known, const ChunkRead& c) {
  for (const auto& s : known)
    if (s.shard == c.shard && s.visit == c.visit && s.chunk == c.chunk) return true;
  return false;
}

SampleStream::SampleStream(const ShardIndex& index, const StreamConfig& cfg, int64_t epoch, const ConsumedSet* consumed,
                           int64_t consumed_count, int64_t segment)
    : index_(index), cfg_(cfg), epoch_(epoch), consumed_(cfg.resampled ? nullptr : consumed),
      order_gen_(segment == 0 ? mix_seed(cfg.seed, static_cast<uint64_t>(epoch), static_cast<uint64_t>(cfg.rank) + 1,
                                         0x53545245414dull)
                              : mix_seed(mix_seed(cfg.seed, static_cast<uint64_t>(epoch), static_cast<uint64_t>(segment)),
                                         static_cast<uint64_t>(cfg.rank) + 1, 0x53545245414dull)) {
  COCA_CHECK(cfg_.chunk_rows >= 1, "loader: chunk rows must be positive");
  target_ = batches_per_epoch(index, cfg, epoch, consumed_, consumed_count) * cfg.batch_size;
  if (!cfg.resampled) plan_ = shards_of_rank(shard_permutation(static_cast<int64_t>(index.shards.size()), cfg.seed, epoch),
                                             cfg.rank, cfg.world);
  bad_.assign(index.shards.size(), 0);
  if (cfg.resampled && !cfg.shard_weights.empty()) {
    COCA_CHECK(cfg.shard_weights.size() == index.shards.size(), "loader: ", cfg.shard_weights.size(),
               " shard weights for ", index.shards.size(), " shards");
    double sum = 0;
    for (double w : cfg.shard_weights) {
      COCA_CHECK(w >= 0 && std::isfinite(w), "loader: a shard weight of ", w);
      cumulative_weight_.push_back(sum += w);
    }
    COCA_CHECK(sum > 0, "loader: every shard weight is 0");
  }
  buffer_.reserve(static_cast<size_t>(std::max(cfg.shuffle_buffer, 0) + cfg.chunk_rows));
}

void SampleStream::start_shard(int32_t shard) {
  current_shard_ = shard;
  const int64_t n = index_.shards[static_cast<size_t>(shard)].samples;
  chunk_order_.clear();
  for (int64_t s = 0; s < n; s += cfg_.chunk_rows) chunk_order_.push_back(s);
  if (cfg_.shuffle_chunks)
    for (size_t i = chunk_order_.size(); i > 1; --i) std::swap(chunk_order_[i - 1], chunk_order_[order_gen_.below(i)]);
  chunk_pos_ = 0;
}

bool SampleStream::read_next_chunk(const ChunkReader& read) {
  for (;;) {
    if (current_shard_ >= 0 && chunk_pos_ < chunk_order_.size()) {
      const int64_t start = chunk_order_[chunk_pos_++];
      const int64_t n = std::min<int64_t>(cfg_.chunk_rows, index_.shards[static_cast<size_t>(current_shard_)].samples - start);
      const int64_t ordinal = chunk_ordinal_++;
      if (consumed_) {  // a chunk that earlier segments emitted entirely is not read again
        bool fresh = false;
        for (int64_t r = 0; r < n && !fresh; ++r) fresh = !consumed_->contains({current_shard_, start + r});
        if (!fresh) continue;
      }
      if (!read(ChunkRead{current_shard_, start, n, visit_, ordinal})) {
        skipped_.push_back({current_shard_, visit_, ordinal});
        bad_[static_cast<size_t>(current_shard_)] = 1;
        current_shard_ = -1;
        continue;
      }
      for (int64_t r = 0; r < n; ++r)
        if (!consumed_ || !consumed_->contains({current_shard_, start + r})) buffer_.push_back({current_shard_, start + r});
      return true;
    }
    current_shard_ = -1;
    if (cfg_.resampled) {
      const int32_t s = draw_shard();
      // An empty shard gives nothing, like a bad one: drawing on needs a readable one with samples.
      if (bad_[static_cast<size_t>(s)] || index_.shards[static_cast<size_t>(s)].samples == 0) {
        bool any_good = false;
        for (size_t i = 0; i < bad_.size() && !any_good; ++i) any_good = !bad_[i] && index_.shards[i].samples > 0;
        COCA_CHECK(any_good, "loader: every shard with samples failed to read");
        continue;
      }
      start_shard(s);
      continue;
    }
    if (plan_pos_ >= plan_.size()) {
      // Out of shards short of the lockstep target: only after skipping bad shards. Go round
      // this rank's good shards again (these samples repeat) so every rank still yields the
      // same number of batches.
      if (skipped_.empty()) return false;
      bool any_good = false;
      for (int32_t s : plan_) any_good |= !bad_[static_cast<size_t>(s)];
      COCA_CHECK(any_good, "loader: rank ", cfg_.rank, " has no readable shard left in epoch ", epoch_);
      plan_pos_ = 0;
      ++visit_;
      chunk_ordinal_ = 0;
    }
    const int32_t s = plan_[plan_pos_++];
    if (bad_[static_cast<size_t>(s)]) continue;
    start_shard(s);
  }
}

int32_t SampleStream::draw_shard() {
  if (cumulative_weight_.empty()) return static_cast<int32_t>(order_gen_.below(index_.shards.size()));
  const double u = order_gen_.uniform() * cumulative_weight_.back();
  const auto it = std::upper_bound(cumulative_weight_.begin(), cumulative_weight_.end(), u);
  return static_cast<int32_t>(std::min<size_t>(static_cast<size_t>(it - cumulative_weight_.begin()),
                                               cumulative_weight_.size() - 1));
}

bool SampleStream::next(SampleRef& out, const ChunkReader& read) {
  if (emitted_ >= target_) return false;
  const size_t keep = static_cast<size_t>(std::max(cfg_.shuffle_buffer, 1));
  while (!exhausted_ && buffer_.size() <= keep) {
    if (!read_next_chunk(read)) exhausted_ = true;
  }
  COCA_CHECK(!buffer_.empty(), "loader: rank ", cfg_.rank, " ran out of samples at ", emitted_, " of ", target_,
             " in epoch ", epoch_, " (index counts do not match the shards?)");
  const size_t j = cfg_.shuffle_buffer <= 1 ? 0 : order_gen_.below(buffer_.size());
  out = buffer_[j];
  if (cfg_.shuffle_buffer <= 1) {
    buffer_.erase(buffer_.begin());
  } else {
    buffer_[j] = buffer_.back();
    buffer_.pop_back();
  }
  ++emitted_;
  return true;
}

}  // namespace coca
