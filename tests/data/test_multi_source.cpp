// Several training sets in one run (--train-data 'A::B', --train-data-upsampling-factors):
// a plain epoch visits every sample of both sets exactly once; a resampled epoch draws each
// set with the weight its factor gives it; sets that disagree are refused in one line.
#include <gtest/gtest.h>

#include <set>

#include "coca/data/loader.h"
#include "coca/data/multi_source.h"
#include "data/fixtures.h"

using namespace coca;
using coca::testing::TempDir;

namespace {

LoaderOptions options(const std::string& dir, int rank, int world) {
  LoaderOptions lo;
  lo.dir = dir;
  lo.rank = rank;
  lo.world = world;
  lo.batch_size = 8;
  lo.seed = 3;
  lo.threads = 1;
  lo.shuffle_buffer = 20;
  return lo;
}

}  // namespace

TEST(MultiSource, PlainEpochVisitsEverySampleOfBothOnce) {
  TempDir t("multi-plain");
  const std::string a = t.str("a"), b = t.str("b");
  coca::testing::make_indexed_shards(a, {24, 24, 24, 24});  // 96 samples, keys s0..s95
  coca::testing::make_indexed_shards(b, {24, 24});          // 48 samples, keys s0..s47
  std::multiset<std::string> seen;  // "<source>:<key>"
  std::vector<int64_t> by_source(2, 0);
  for (int rank = 0; rank < 2; ++rank) {
    ShardLoader loader(options(a + "::" + b, rank, 2));
    ASSERT_EQ(loader.sources().size(), 2u);
    EXPECT_EQ(loader.index().total_samples, 144);
    loader.start_epoch(0);
    Batch batch;
    while (loader.next(batch)) {
      ASSERT_EQ(batch.source_counts.size(), 2u);
      for (size_t i = 0; i < batch.keys.size(); ++i) {
        // Global indices 0-95 are A's shards, 96-143 B's.
        const int src = batch.indices[i] < 96 ? 0 : 1;
        seen.insert(std::to_string(src) + ":" + batch.keys[i]);
        ++by_source[static_cast<size_t>(src)];
      }
      EXPECT_EQ(batch.source_counts[0] + batch.source_counts[1], 8);
    }
  }
  EXPECT_EQ(seen.size(), 144u);
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(), 144u) << "a sample came twice";
  EXPECT_EQ(by_source, (std::vector<int64_t>{96, 48}));
}

// A has 4 shards of 24, B 2 of 24; factors 1::4 weigh B's shards 4 each: B's expected share
// of the draws (and of the samples) is 2*4 / (4*1 + 2*4) = 2/3, against 1/3 without factors.
// 9600 samples are 400 shard draws: the share's standard deviation is sqrt(2/9/400) = 0.024,
// and the tolerance, 0.06, is 2.5 of them (the seeds are fixed, so the test is repeatable).
TEST(MultiSource, ResampledEpochDrawsSourcesByTheirFactors) {
  TempDir t("multi-resampled");
  const std::string a = t.str("a"), b = t.str("b");
  coca::testing::make_indexed_shards(a, {24, 24, 24, 24});
  coca::testing::make_indexed_shards(b, {24, 24});
  for (const bool weighted : {true, false}) {
    std::vector<int64_t> counts(2, 0);
    for (int rank = 0; rank < 2; ++rank) {
      LoaderOptions lo = options(a + "::" + b, rank, 2);
      lo.resampled = true;
      lo.epoch_samples = 9600;
      lo.batch_size = 48;
      if (weighted) lo.upsampling_factors = {1, 4};
      ShardLoader loader(lo);
      loader.start_epoch(0);
      Batch batch;
      while (loader.next(batch))
        for (size_t s = 0; s < 2; ++s) counts[s] += batch.source_counts[s];
    }
    ASSERT_EQ(counts[0] + counts[1], 9600);
    const double share_b = static_cast<double>(counts[1]) / 9600.0;
    EXPECT_NEAR(share_b, weighted ? 2.0 / 3.0 : 1.0 / 3.0, 0.06) << (weighted ? "factors 1::4" : "no factors");
  }
}

TEST(MultiSource, RefusalsAreOneLine) {
  TempDir t("multi-refuse");
  const std::string a = t.str("a"), b = t.str("b");
  coca::testing::make_indexed_shards(a, {8, 8}, 8);
  coca::testing::make_indexed_shards(b, {8, 8}, 16);
  auto message = [&](const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string sizes = message([&] { load_train_sources(a + "::" + b); });
  EXPECT_NE(sizes.find("image_size 16"), std::string::npos) << sizes;
  EXPECT_EQ(sizes.find('\n'), std::string::npos) << sizes;
  EXPECT_NE(message([&] { load_train_sources(a + "::"); }).find("empty entry"), std::string::npos);
  EXPECT_NE(message([&] { parse_upsampling_factors("1::2::3", 2, "--f"); }).find("3 factors for 2"), std::string::npos);
  EXPECT_NE(message([&] { parse_upsampling_factors("1::-2", 2, "--f"); }).find("'-2' is not a positive number"),
            std::string::npos);
  LoaderOptions lo = options(a + "::" + a, 0, 1);
  lo.upsampling_factors = {1, 2};
  EXPECT_NE(message([&] { ShardLoader l(lo); }).find("--dataset-resampled"), std::string::npos);
}
