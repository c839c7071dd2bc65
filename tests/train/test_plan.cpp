// The step plan and the loader's epochs agree for any shard sizes, ranks, batch sizes, seeds
// and --accum-freq (property test over random shard-size lists), and a run resumed with
// another world or batch size continues its epoch without repeating or losing a sample.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "coca/data/loader.h"
#include "coca/data/sample_stream.h"
#include "coca/tensor/random.h"
#include "coca/train/plan.h"

using namespace coca;
using coca::train::PlanInputs;
using coca::train::plan_steps;

namespace {

ShardIndex random_index(Generator& g) {
  ShardIndex index;
  const int64_t shards = 1 + static_cast<int64_t>(g.below(12));
  for (int64_t s = 0; s < shards; ++s) {
    // Mostly full shards and a short last one (what coca-shard writes), sometimes anything.
    const int64_t full = 20 + static_cast<int64_t>(g.below(100));
    const int64_t n = g.below(3) == 0 ? 1 + static_cast<int64_t>(g.below(120)) : full;
    index.shards.push_back({shard_file_name(s), n});
    index.total_samples += n;
  }
  return index;
}

StreamConfig random_config(Generator& g, const ShardIndex& index) {
  StreamConfig c;
  c.seed = g.next_u64();
  c.world = 1 + static_cast<int>(g.below(std::min<uint64_t>(4, index.shards.size())));
  c.batch_size = 1 + static_cast<int>(g.below(24));
  c.shuffle_buffer = static_cast<int>(g.below(40));
  c.chunk_rows = 1 + static_cast<int>(g.below(16));
  return c;
}

const auto read_all = [](const SampleStream::ChunkRead&) { return true; };

// Samples each rank's stream yields in one epoch (until next() says the epoch is over).
std::vector<std::vector<SampleRef>> run_streams(const ShardIndex& index, StreamConfig c, int64_t epoch,
                                                const ConsumedSet* consumed = nullptr, int64_t segment = 0,
                                                int64_t limit = -1) {
  std::vector<std::vector<SampleRef>> out(static_cast<size_t>(c.world));
  for (int r = 0; r < c.world; ++r) {
    c.rank = r;
    SampleStream s(index, c, epoch, consumed, 0, segment);
    SampleRef ref;
    while ((limit < 0 || static_cast<int64_t>(out[r].size()) < limit) && s.next(ref, read_all)) out[r].push_back(ref);
  }
  return out;
}

}  // namespace

TEST(Plan, StepsOfEveryEpochMatchWhatTheLoaderYieldsForRandomShardSizes) {
  Generator g(20261201);
  int uneven_epochs = 0;
  for (int trial = 0; trial < 300; ++trial) {
    const ShardIndex index = random_index(g);
    const StreamConfig c = random_config(g, index);
    const int accum = 1 + static_cast<int>(g.below(3));
    const int64_t epochs = 1 + static_cast<int64_t>(g.below(5));
    auto batches_of = [&](int64_t e) { return batches_per_epoch(index, c, e); };
    // Walk the run as the trainer does: plan at the start of each epoch, take the planned steps.
    int64_t step = 0, planned_total = -1;
    for (int64_t e = 0; e < epochs; ++e) {
      PlanInputs in;
      in.step = step;
      in.epoch = e;
      in.epoch_batches = batches_of(e);
      in.epochs = epochs;
      in.accum_freq = accum;
      in.batches_of_epoch = batches_of;
      const auto plan = plan_steps(in);
      if (planned_total < 0) planned_total = plan.total_steps;
      ASSERT_EQ(plan.total_steps, planned_total) << "the total changed at epoch " << e << " (trial " << trial << ")";
      const auto streams = run_streams(index, c, e);
      std::set<std::pair<int32_t, int64_t>> seen;
      for (const auto& s : streams) {
        // Every rank yields the same number of batches, and the plan takes all whole steps.
        ASSERT_EQ(static_cast<int64_t>(s.size()), in.epoch_batches * c.batch_size) << "trial " << trial;
        ASSERT_EQ(plan.epoch_end_step - step, static_cast<int64_t>(s.size()) / c.batch_size / accum);
        for (const auto& r : s) ASSERT_TRUE(seen.insert({r.shard, r.row}).second) << "a sample repeats (trial " << trial << ")";
      }
      if (e > 0 && batches_of(e) != batches_of(0)) ++uneven_epochs;
      step = plan.epoch_end_step;
    }
    EXPECT_EQ(step, planned_total);
  }
  // The property is only interesting if epochs of one run differ in length.
  EXPECT_GT(uneven_epochs, 20);
}

TEST(Plan, TheReportedRepro) {
  // 6 x 100 + 50 samples, 2 ranks, batch 16: epoch 0 has more batches than some later epochs.
  ShardIndex index;
  for (int s = 0; s < 7; ++s) index.shards.push_back({shard_file_name(s), s < 6 ? 100 : 50}), index.total_samples += s < 6 ? 100 : 50;
  StreamConfig c;
  c.world = 2;
  c.batch_size = 16;
  std::set<int64_t> counts;
  for (int64_t e = 0; e < 8; ++e) counts.insert(batches_per_epoch(index, c, e));
  EXPECT_GT(counts.size(), 1u) << "expected epochs of different lengths for this set";
  for (int64_t e = 0; e < 8; ++e)
    for (const auto& s : run_streams(index, c, e))
      EXPECT_EQ(static_cast<int64_t>(s.size()), batches_per_epoch(index, c, e) * 16);
}

// --train-num-samples sets the epoch length in every mode: resampled it is the length, otherwise
// a cap (the loader yields exactly that many batches per rank).
TEST(Plan, TrainNumSamplesSetsTheEpochLength) {
  ShardIndex index;
  for (int s = 0; s < 6; ++s) index.shards.push_back({shard_file_name(s), 50}), index.total_samples += 50;
  StreamConfig c;
  c.world = 2;
  c.batch_size = 8;
  const int64_t full = batches_per_epoch(index, c, 0);
  EXPECT_EQ(full, 150 / 8);
  c.epoch_samples = 100;  // 100 / (2 x 8) = 6 batches per rank
  EXPECT_EQ(batches_per_epoch(index, c, 0), 6);
  for (const auto& s : run_streams(index, c, 0)) EXPECT_EQ(s.size(), 6u * 8);
  c.epoch_samples = 100000;  // more than there is: the data's own count
  EXPECT_EQ(batches_per_epoch(index, c, 0), full);
  c.resampled = true;
  EXPECT_EQ(batches_per_epoch(index, c, 0), 100000 / 16);
}

TEST(Plan, MaxStepsAndCooldown) {
  PlanInputs in;
  in.epoch_batches = 10;
  in.epochs = 3;
  in.accum_freq = 2;
  in.epochs_cooldown = 1;
  in.batches_of_epoch = [](int64_t e) { return int64_t{10} + e; };  // 10, 11, 12 batches
  auto p = plan_steps(in);
  EXPECT_EQ(p.epoch_end_step, 5);
  EXPECT_EQ(p.total_steps, 5 + 5 + 6);
  EXPECT_EQ(p.cooldown_steps, 6);
  in.max_steps = 7;
  EXPECT_EQ(plan_steps(in).total_steps, 7);
  // Resumed mid-epoch after 4 batches (2 steps) at step 2: the same ends.
  in.max_steps = 0;
  in.step = 2;
  in.batches_taken = 4;
  p = plan_steps(in);
  EXPECT_EQ(p.epoch_end_step, 5);
  EXPECT_EQ(p.total_steps, 16);
}

// A checkpoint taken after k batches of W1 ranks x B1, resumed on W2 ranks x B2: the new
// segment yields only samples the old ranks had not taken, and the only samples of the epoch
// never seen are the lockstep remainder of the new segment.
TEST(Segments, ResumeWithAnotherWorldNeitherRepeatsNorLosesSamples) {
  Generator g(77);
  for (int trial = 0; trial < 150; ++trial) {
    const ShardIndex index = random_index(g);
    StreamConfig c1 = random_config(g, index);
    StreamConfig c2 = random_config(g, index);
    c2.seed = c1.seed, c2.shuffle_buffer = c1.shuffle_buffer, c2.chunk_rows = c1.chunk_rows;
    const int64_t epoch = static_cast<int64_t>(g.below(3));
    const int64_t total1 = batches_per_epoch(index, c1, epoch);
    if (total1 == 0) continue;
    const int64_t k = static_cast<int64_t>(g.below(static_cast<uint64_t>(total1)));
    const auto old = run_streams(index, c1, epoch, nullptr, 0, k * c1.batch_size);
    StreamSegment seg;
    seg.world = c1.world, seg.batch_size = c1.batch_size, seg.batches = k;
    seg.skipped.assign(static_cast<size_t>(c1.world), {});
    const ConsumedSet consumed = replay_segments(index, c1, epoch, {seg});
    std::set<std::pair<int32_t, int64_t>> taken;
    for (const auto& s : old)
      for (const auto& r : s) taken.insert({r.shard, r.row});
    ASSERT_EQ(consumed.size(), static_cast<int64_t>(taken.size()));
    const int64_t total2 = batches_per_epoch(index, c2, epoch, &consumed);
    const auto fresh = run_streams(index, c2, epoch, &consumed, 1);
    std::set<std::pair<int32_t, int64_t>> seen = taken;
    for (const auto& s : fresh) {
      ASSERT_EQ(static_cast<int64_t>(s.size()), total2 * c2.batch_size);
      for (const auto& r : s) ASSERT_TRUE(seen.insert({r.shard, r.row}).second) << "repeated sample (trial " << trial << ")";
    }
    // Unseen samples = per new rank, what its shards still held beyond the lockstep target.
    const auto perm = shard_permutation(static_cast<int64_t>(index.shards.size()), c2.seed, epoch);
    int64_t remainder = 0;
    for (int r = 0; r < c2.world; ++r) {
      int64_t avail = 0;
      for (int32_t s : shards_of_rank(perm, r, c2.world)) avail += index.shards[static_cast<size_t>(s)].samples - consumed.in_shard(s);
      remainder += avail - total2 * c2.batch_size;
    }
    EXPECT_EQ(index.total_samples - static_cast<int64_t>(seen.size()), remainder) << "trial " << trial;
  }
}

TEST(Segments, ContinueElsewhereAppendsOneSegmentAndRoundTrips) {
  LoaderState a, b;
  a.epoch = b.epoch = 3;
  a.batch = b.batch = 5;
  b.skipped.push_back({2, 0, 1});
  const LoaderState st = LoaderState::continue_elsewhere({a, b}, 16);
  EXPECT_EQ(st.epoch, 3);
  EXPECT_EQ(st.batch, 0);
  ASSERT_EQ(st.segments.size(), 1u);
  EXPECT_EQ(st.segments[0].world, 2);
  EXPECT_EQ(st.segments[0].batch_size, 16);
  EXPECT_EQ(st.segments[0].batches, 5);
  ASSERT_EQ(st.segments[0].skipped[1].size(), 1u);
  const LoaderState back = LoaderState::from_json(st.to_json());
  ASSERT_EQ(back.segments.size(), 1u);
  EXPECT_EQ(back.segments[0].skipped[1][0].chunk, 1);
  // A second change of world in the same epoch appends another segment.
  LoaderState c = st;
  c.batch = 2;
  EXPECT_EQ(LoaderState::continue_elsewhere({c}, 8).segments.size(), 2u);
  b.batch = 4;
  EXPECT_THROW(LoaderState::continue_elsewhere({a, b}, 16), Error);
}
