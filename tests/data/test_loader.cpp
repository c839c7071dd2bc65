// Loader: determinism, exact resume, lockstep and no duplicates for W = 1..4, content of
// the batches, resampled mode, corrupt shards, augmentation bounds, the evaluation reader.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include <fstream>

#include "coca/data/augment.h"
#include "coca/data/h5.h"
#include "coca/data/loader.h"
#include "coca/data/sample_stream.h"
#include "data/fixtures.h"

using namespace coca;
using coca::testing::TempDir;
namespace fs = std::filesystem;

namespace {

// Uneven shard sizes so that lockstep has something to do.
const std::vector<int64_t> kCounts = {13, 7, 10, 16, 5, 9, 12};

LoaderOptions base_options(const std::string& dir, int rank, int world) {
  LoaderOptions o;
  o.dir = dir;
  o.rank = rank;
  o.world = world;
  o.batch_size = 4;
  o.seed = 1234;
  o.shuffle_buffer = 6;
  o.threads = 2;
  o.augment = false;
  return o;
}

struct Epoch {
  std::vector<std::vector<int64_t>> indices;  // per batch
  std::vector<std::vector<float>> images;
};

Epoch run_epoch(ShardLoader& loader, int64_t epoch, int64_t max_batches = -1) {
  Epoch e;
  loader.start_epoch(epoch);
  Batch b;
  while ((max_batches < 0 || static_cast<int64_t>(e.indices.size()) < max_batches) && loader.next(b)) {
    e.indices.push_back(b.indices);
    e.images.push_back(b.images.to_vector<float>());
  }
  return e;
}

Epoch drain(ShardLoader& loader) {
  Epoch e;
  Batch b;
  while (loader.next(b)) {
    e.indices.push_back(b.indices);
    e.images.push_back(b.images.to_vector<float>());
  }
  return e;
}

// Normalised red value of a pixel whose 8-bit value is v.
float norm_red(int v) { return (static_cast<float>(v) / 255.0f - kClipMean[0]) / kClipStd[0]; }

}  // namespace

TEST(Loader, BatchesCarryTheRightSamples) {
  TempDir dir("loader");
  coca::testing::make_indexed_shards(dir.str(), kCounts);
  ShardLoader loader(base_options(dir.str(), 0, 1));
  loader.start_epoch(0);
  Batch b;
  ASSERT_TRUE(loader.next(b));
  ASSERT_EQ(b.images.shape(), (Shape{4, 3, 8, 8}));
  ASSERT_EQ(b.tokens.shape(), (Shape{4, 3}));
  const auto img = b.images.to_vector<float>();
  const auto tok = b.tokens.to_vector<int32_t>();
  for (int i = 0; i < 4; ++i) {
    const int64_t g = b.indices[i];
    EXPECT_EQ(b.keys[i], "s" + std::to_string(g));
    EXPECT_EQ(tok[i * 3], g);
    EXPECT_EQ(tok[i * 3 + 2], g + 2);
    EXPECT_NEAR(img[static_cast<size_t>(i) * 3 * 64], norm_red(static_cast<int>(g % 251)), 1e-5);
  }
}

TEST(Loader, DeterministicAndSeedSensitive) {
  TempDir dir("loader");
  coca::testing::make_indexed_shards(dir.str(), kCounts);
  LoaderOptions o = base_options(dir.str(), 0, 1);
  o.augment = true;
  o.image_size = 6;
  ShardLoader a(o), b(o);
  const Epoch ea = run_epoch(a, 0), eb = run_epoch(b, 0);
  EXPECT_EQ(ea.indices, eb.indices);
  EXPECT_EQ(ea.images, eb.images);  // augmentation included, whatever the thread timing
  const Epoch ea1 = run_epoch(a, 1);
  EXPECT_NE(ea.indices, ea1.indices);  // a new epoch reshuffles
  o.seed = 99;
  ShardLoader c(o);
  EXPECT_NE(run_epoch(c, 0).indices, ea.indices);
  o.seed = 1234;
  o.threads = 1;
  ShardLoader d(o);
  EXPECT_EQ(run_epoch(d, 0).images, ea.images);  // thread count does not matter
}

TEST(Loader, LockstepNoDuplicatesForWorldSizes1To4) {
  TempDir dir("loader");
  const ShardIndex index = coca::testing::make_indexed_shards(dir.str(), kCounts);
  for (int world = 1; world <= 4; ++world) {
    for (int64_t epoch = 0; epoch < 2; ++epoch) {
      std::set<int64_t> seen;
      int64_t batches = -1;
      std::vector<int64_t> per_rank_available;
      for (int rank = 0; rank < world; ++rank) {
        ShardLoader loader(base_options(dir.str(), rank, world));
        const Epoch e = run_epoch(loader, epoch);
        if (batches < 0) batches = static_cast<int64_t>(e.indices.size());
        EXPECT_EQ(static_cast<int64_t>(e.indices.size()), batches) << "world " << world << " rank " << rank;
        EXPECT_EQ(loader.batches_per_epoch(epoch), batches);
        std::set<int32_t> shards_used;
        for (const auto& bi : e.indices) {
          EXPECT_EQ(bi.size(), 4u);
          for (int64_t g : bi) {
            EXPECT_TRUE(seen.insert(g).second) << "sample " << g << " twice, world " << world;
            int64_t acc = 0;
            for (size_t s = 0; s < kCounts.size(); ++s) {
              if (g < acc + kCounts[s]) { shards_used.insert(static_cast<int32_t>(s)); break; }
              acc += kCounts[s];
            }
          }
        }
        // A rank reads only whole shards of its own: the samples it could have yielded.
        int64_t available = 0;
        for (int32_t s : shards_used) available += kCounts[static_cast<size_t>(s)];
        per_rank_available.push_back(available);
      }
      // The batch count is the largest that every rank can fill (remainder dropped).
      EXPECT_GT(batches, 0);
      for (int64_t a : per_rank_available) EXPECT_GE(a, batches * 4);
      EXPECT_EQ(static_cast<int64_t>(seen.size()), batches * 4 * world);
      if (world == 1) EXPECT_EQ(batches, index.total_samples / 4);
    }
  }
}

// With and without colour jitter and grayscale (drawn from the same per-sample generator).
TEST(Loader, ExactResumeMidEpoch) {
  TempDir dir("loader");
  coca::testing::make_indexed_shards(dir.str(), kCounts);
  const ColorAugmentParams jitter{0.4, 0.4, 0.4, 0.1, 0.8, 0.2};
  for (const auto& [world, color] : {std::pair{1, false}, {3, false}, {1, true}, {3, true}}) {
    LoaderOptions o = base_options(dir.str(), world - 1, world);
    o.augment = true;
    o.image_size = 7;
    if (color) o.color = jitter;
    ShardLoader full(o);
    const Epoch all = run_epoch(full, 2);
    ASSERT_GE(all.indices.size(), 3u);
    if (color) {  // the fixture's grey images change under brightness jitter
      LoaderOptions plain_options = o;
      plain_options.color = {};
      ShardLoader plain(plain_options);
      const Epoch all_plain = run_epoch(plain, 2);
      for (size_t i = 0; i < all.images.size(); ++i) EXPECT_NE(all.images[i], all_plain.images[i]) << i;
    }
    for (int64_t k : {int64_t{1}, int64_t{3}, static_cast<int64_t>(all.indices.size())}) {
      ShardLoader first(o);
      run_epoch(first, 2, k);
      const LoaderState st = LoaderState::from_json(first.state().to_json());  // through JSON, as a checkpoint
      EXPECT_EQ(st.epoch, 2);
      EXPECT_EQ(st.batch, k);
      ShardLoader resumed(o);
      resumed.restore(st);
      const Epoch rest = drain(resumed);
      ASSERT_EQ(rest.indices.size(), all.indices.size() - static_cast<size_t>(k)) << "k=" << k;
      for (size_t i = 0; i < rest.indices.size(); ++i) {
        EXPECT_EQ(rest.indices[i], all.indices[static_cast<size_t>(k) + i]);
        EXPECT_EQ(rest.images[i], all.images[static_cast<size_t>(k) + i]) << "world " << world << " color " << color;
      }
    }
  }
}

// Colour augmentation belongs to training augmentation: without `augment` it is not applied.
TEST(Loader, NoColorAugmentationWithoutAugment) {
  TempDir dir("loader");
  coca::testing::make_indexed_shards(dir.str(), {8}, 8, 4, 3, 4);
  LoaderOptions o = base_options(dir.str(), 0, 1);
  ShardLoader plain(o);
  const Epoch want = run_epoch(plain, 0);
  o.color = {0.4, 0.4, 0.4, 0.1, 1.0, 1.0};
  ShardLoader with_color(o);
  EXPECT_EQ(run_epoch(with_color, 0).images, want.images);
  o.augment = true;
  ShardLoader augmented(o);
  EXPECT_NE(run_epoch(augmented, 0).images, want.images);
}

// A checkpoint of 2 ranks x 4 taken mid-epoch, continued on 3 ranks x 3 (and on 1 rank x 5):
// the new ranks' batches hold only samples the old ranks had not taken, fill the epoch up to
// the lockstep remainder, and a save + restore inside the new segment is exact.
TEST(Loader, ContinueWithAnotherWorldAndBatchSize) {
  TempDir dir("loader");
  const ShardIndex index = coca::testing::make_indexed_shards(dir.str(), kCounts);
  const int64_t epoch = 1, k = 2;
  std::set<int64_t> taken;
  std::vector<LoaderState> old;
  for (int r = 0; r < 2; ++r) {
    ShardLoader l(base_options(dir.str(), r, 2));
    for (const auto& b : run_epoch(l, epoch, k).indices) taken.insert(b.begin(), b.end());
    old.push_back(LoaderState::from_json(l.state().to_json()));
  }
  ASSERT_EQ(taken.size(), 2u * 2 * 4);
  const LoaderState cont = LoaderState::from_json(LoaderState::continue_elsewhere(old, 4).to_json());
  for (auto [world, batch] : {std::pair{3, 3}, std::pair{1, 5}}) {
    std::set<int64_t> seen = taken;
    int64_t batches = -1;
    for (int r = 0; r < world; ++r) {
      LoaderOptions o = base_options(dir.str(), r, world);
      o.batch_size = batch;
      o.augment = true;
      o.image_size = 7;
      ShardLoader l(o);
      l.restore(cont);
      if (batches < 0) batches = l.batches_this_epoch();
      EXPECT_EQ(l.batches_this_epoch(), batches);
      Batch b;
      std::vector<std::vector<int64_t>> got;
      std::vector<std::vector<float>> imgs;
      while (l.next(b)) got.push_back(b.indices), imgs.push_back(b.images.to_vector<float>());
      ASSERT_EQ(static_cast<int64_t>(got.size()), batches);
      for (const auto& bi : got)
        for (int64_t g : bi) EXPECT_TRUE(seen.insert(g).second) << "sample " << g << " repeats, world " << world;
      // Exact resume inside the new segment: state after 1 batch, restored, gives the rest.
      if (batches >= 2) {
        ShardLoader a(o);
        a.restore(cont);
        ASSERT_TRUE(a.next(b));
        const LoaderState mid = LoaderState::from_json(a.state().to_json());
        EXPECT_EQ(mid.segments.size(), 1u);
        ShardLoader c(o);
        c.restore(mid);
        for (size_t i = 1; i < got.size(); ++i) {
          ASSERT_TRUE(c.next(b));
          EXPECT_EQ(b.indices, got[i]);
          EXPECT_EQ(b.images.to_vector<float>(), imgs[i]);
        }
        EXPECT_FALSE(c.next(b));
      }
    }
    EXPECT_GT(batches, 0);
    // Only a lockstep remainder is left unseen: fewer than world x batch per rank's worth.
    EXPECT_LT(index.total_samples - static_cast<int64_t>(seen.size()), static_cast<int64_t>(world) * 16 + batch * world);
    if (world == 1) EXPECT_LT(index.total_samples - static_cast<int64_t>(seen.size()), batch);
  }
}

TEST(Loader, MoreRanksThanShardsNeedsResampling) {
  TempDir dir("loader");
  coca::testing::make_indexed_shards(dir.str(), {8, 8});
  try {
    ShardLoader l(base_options(dir.str(), 0, 3));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("3 ranks but only 2 shards"), std::string::npos) << e.what();
  }
  LoaderOptions o = base_options(dir.str(), 2, 3);
  o.resampled = true;
  ShardLoader l(o);
  EXPECT_EQ(l.batches_per_epoch(0), 16 / (3 * 4));
  const Epoch e = run_epoch(l, 0);
  EXPECT_EQ(e.indices.size(), 1u);
}

TEST(Loader, ResampledIsEndlessAndResumable) {
  TempDir dir("loader");
  coca::testing::make_indexed_shards(dir.str(), {6, 6, 6});
  LoaderOptions o = base_options(dir.str(), 1, 2);
  o.resampled = true;
  o.epoch_samples = 80;  // more than the 18 samples: shards repeat
  ShardLoader a(o);
  const Epoch e0 = run_epoch(a, 0);
  EXPECT_EQ(e0.indices.size(), 10u);
  std::set<int64_t> distinct;
  for (const auto& b : e0.indices) distinct.insert(b.begin(), b.end());
  EXPECT_LE(distinct.size(), 18u);  // 40 samples drawn from 18: with replacement
  ShardLoader b(o);
  run_epoch(b, 0, 4);
  ShardLoader c(o);
  c.restore(b.state());
  const Epoch rest = drain(c);
  ASSERT_EQ(rest.indices.size(), 6u);
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(rest.indices[i], e0.indices[4 + i]);
}

// Found by tests/fuzz/fuzz_shard_index: a resampled stream over shards that are all empty, or
// whose only shard with samples failed to read, drew empty shards forever. Both are errors now.
TEST(SampleStream, ResampledWithNothingToReadIsAnError) {
  ShardIndex index;
  index.shards = {{"a.h5", 0}, {"b.h5", 0}};
  StreamConfig cfg;
  cfg.resampled = true;
  cfg.epoch_samples = 8;
  cfg.batch_size = 2;
  try {
    batches_per_epoch(index, cfg, 0);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("every shard of the set is empty"), std::string::npos) << e.what();
  }
  index.shards = {{"a.h5", 0}, {"b.h5", 5}};
  index.total_samples = 5;
  SampleStream stream(index, cfg, 0);
  SampleRef ref;
  try {
    while (stream.next(ref, [](const SampleStream::ChunkRead&) { return false; })) {
    }
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("every shard with samples failed to read"), std::string::npos) << e.what();
  }
}

TEST(Loader, CorruptShardIsAnErrorNamingTheFile) {
  TempDir dir("loader");
  coca::testing::make_indexed_shards(dir.str(), {12, 12, 12, 12}, 16, 4);
  const fs::path victim = dir.path() / "shard-00002.h5";
  fs::resize_file(victim, fs::file_size(victim) / 2);  // truncated, as by a full disk
  LoaderOptions o = base_options(dir.str(), 0, 1);
  ShardLoader loader(o);
  loader.start_epoch(0);
  Batch b;
  try {
    while (loader.next(b)) {
    }
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("shard-00002.h5"), std::string::npos) << e.what();
  }
  // With skip_bad_shards the epoch completes, in lockstep, without the bad shard's samples
  // past the failure point.
  o.skip_bad_shards = true;
  ShardLoader skipping(o);
  const Epoch e = run_epoch(skipping, 0);
  EXPECT_EQ(static_cast<int64_t>(e.indices.size()), skipping.batches_per_epoch(0));
  EXPECT_FALSE(skipping.state().skipped.empty());
  // ... and resumes exactly across the skip.
  ShardLoader first(o);
  run_epoch(first, 0, 5);
  ShardLoader resumed(o);
  resumed.restore(LoaderState::from_json(first.state().to_json()));
  const Epoch rest = drain(resumed);
  ASSERT_EQ(rest.indices.size(), e.indices.size() - 5);
  for (size_t i = 0; i < rest.indices.size(); ++i) EXPECT_EQ(rest.indices[i], e.indices[5 + i]);
}

TEST(Augment, RandomResizedCropWithinBounds) {
  AugmentParams p;
  Generator g(7);
  for (int i = 0; i < 2000; ++i) {
    const CropBox b = random_resized_crop_box(256, 256, p, g);
    ASSERT_GE(b.x, 0);
    ASSERT_GE(b.y, 0);
    ASSERT_LE(b.x + b.w, 256);
    ASSERT_LE(b.y + b.h, 256);
    const double area = static_cast<double>(b.w) * b.h / (256.0 * 256.0);
    EXPECT_GE(area, 0.88);  // scale >= 0.9, less rounding
    EXPECT_LE(area, 1.0);
    const double ratio = static_cast<double>(b.w) / b.h;
    EXPECT_GE(ratio, 0.9 * 3.0 / 4.0);
    EXPECT_LE(ratio, 1.1 * 4.0 / 3.0);
  }
  // Output shape and range on a real transform.
  const auto px = coca::testing::solid_rgb(32, 32, 0, 128, 255);
  std::vector<float> out(3 * 24 * 24);
  transform_sample({px.data(), 32, 32, 96}, 24, p, g, out.data());
  EXPECT_NEAR(out[0], norm_red(0), 1e-4);
  EXPECT_NEAR(out[24 * 24 * 2], (1.0f - kClipMean[2]) / kClipStd[2], 1e-4);
}

TEST(EvalReader, InOrderWithLabels) {
  TempDir dir("eval");
  coca::testing::make_indexed_shards(dir.str(), {5, 6}, 8, 4, 3, 4);
  EvalOptions o;
  o.dir = dir.str();
  o.batch_size = 4;
  o.image_size = 4;
  EvalReader r(o);
  EXPECT_EQ(r.size(), 11);
  EXPECT_EQ(r.classnames(), (std::vector<std::string>{"class 0", "class 1", "class 2", "class 3"}));
  std::vector<int64_t> order;
  Batch b;
  int batches = 0;
  while (r.next(b)) {
    ++batches;
    ASSERT_EQ(b.images.size(1), 3);
    ASSERT_EQ(b.images.size(2), 4);
    const auto labels = b.labels.to_vector<int32_t>();
    const auto img = b.images.to_vector<float>();
    for (size_t i = 0; i < b.indices.size(); ++i) {
      EXPECT_EQ(labels[i], b.indices[i] % 4);
      EXPECT_NEAR(img[i * 48], norm_red(static_cast<int>(b.indices[i])), 1e-4);  // flat image: resize keeps it
      order.push_back(b.indices[i]);
    }
  }
  EXPECT_EQ(batches, 3);  // 4 + 4 + 3
  std::vector<int64_t> want(11);
  for (int i = 0; i < 11; ++i) want[i] = i;
  EXPECT_EQ(order, want);
  // Two ranks split the set between them.
  o.world = 2;
  o.rank = 1;
  EvalReader r1(o);
  ASSERT_TRUE(r1.next(b));
  EXPECT_EQ(b.indices.front(), 5);
}

TEST(EvalReader, MaxSamplesReadsTheFirstRowsSplitOverRanks) {
  TempDir dir("eval-max");
  coca::testing::make_indexed_shards(dir.str(), {5, 6}, 8, 4, 3);
  EvalOptions o;
  o.dir = dir.str();
  o.batch_size = 3;
  o.max_samples = 9;
  o.world = 2;
  std::vector<int64_t> order;
  for (int rank = 0; rank < 2; ++rank) {
    o.rank = rank;
    EvalReader r(o);
    EXPECT_EQ(r.size(), rank == 0 ? 4 : 5);  // [0, 4) and [4, 9)
    Batch b;
    while (r.next(b)) order.insert(order.end(), b.indices.begin(), b.indices.end());
  }
  EXPECT_EQ(order, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8}));
  o.max_samples = 100;  // more than the set: all of it
  o.world = 1;
  o.rank = 0;
  EXPECT_EQ(EvalReader(o).size(), 11);
  o.max_samples = -1;
  EXPECT_THROW(EvalReader{o}, Error);
}

TEST(Loader, CompressedShardsGiveTheSameBatches) {
  TempDir plain("loader"), gz("loader-gz"), lzf("loader-lzf");
  coca::testing::make_indexed_shards(plain.str(), kCounts);
  coca::testing::make_indexed_shards(gz.str(), kCounts, 8, 4, 3, 0, Compression::gzip);
  coca::testing::make_indexed_shards(lzf.str(), kCounts, 8, 4, 3, 0, Compression::lzf);
  ShardLoader a(base_options(plain.str(), 0, 1)), b(base_options(gz.str(), 0, 1)), c(base_options(lzf.str(), 0, 1));
  const Epoch ea = run_epoch(a, 0);
  const Epoch eb = run_epoch(b, 0);
  const Epoch ec = run_epoch(c, 0);
  EXPECT_EQ(ea.images, eb.images);
  EXPECT_EQ(ea.images, ec.images);
  EXPECT_EQ(ea.indices, ec.indices);
}

TEST(Loader, CorruptChunkErrorNamesFileAndRows) {
  TempDir dir("loader-chunk");
  coca::testing::make_indexed_shards(dir.str(), {12, 12}, 8, 4, 3, 0, Compression::gzip);
  const std::string victim = (dir.path() / "shard-00001.h5").string();
  haddr_t addr = 0;
  hsize_t size = 0;
  {
    // Where HDF5 stored the images' second chunk (rows 4..7).
    h5::init();
    hid_t f = H5Fopen(victim.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "images", H5P_DEFAULT);
    hid_t sp = H5Dget_space(d);
    hsize_t offset[4];
    unsigned mask = 0;
    ASSERT_GE(H5Dget_chunk_info(d, sp, 1, offset, &mask, &addr, &size), 0);
    EXPECT_EQ(offset[0], 4u);
    H5Sclose(sp);
    H5Dclose(d);
    H5Fclose(f);
  }
  {
    std::fstream f(victim, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(addr));
    const std::string junk(static_cast<size_t>(size), '\x5a');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  LoaderOptions o = base_options(dir.str(), 0, 1);
  o.shuffle_chunks = false;
  ShardLoader loader(o);
  loader.start_epoch(0);
  Batch b;
  try {
    while (loader.next(b)) {
    }
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("shard-00001.h5"), std::string::npos) << msg;
    EXPECT_NE(msg.find("rows [4, 8)"), std::string::npos) << msg;
  }
}

// --image-mean / --image-std: the loader and the eval reader normalise with the given values.
TEST(Loader, MeanStdOverride) {
  TempDir dir("meanstd");
  coca::testing::make_indexed_shards(dir.str(), {6}, 8, 4, 3, 4);
  const std::array<float, 3> mean{0.5f, 0.25f, 0.125f}, stdev{0.2f, 0.4f, 0.8f};
  auto expect_normalised = [&](const Batch& b, int H) {
    const auto img = b.images.to_vector<float>();
    for (size_t i = 0; i < b.indices.size(); ++i)
      for (int c = 0; c < 3; ++c) {
        const double v = static_cast<double>(b.indices[i] % 251) / 255.0;
        EXPECT_NEAR(img[(i * 3 + c) * H * H], (v - mean[c]) / stdev[c], 1e-4) << "sample " << i << " channel " << c;
      }
  };
  LoaderOptions o = base_options(dir.str(), 0, 1);
  o.augment = true;  // a random crop of a flat image is flat
  o.mean = mean;
  o.std = stdev;
  ShardLoader loader(o);
  loader.start_epoch(0);
  Batch b;
  ASSERT_TRUE(loader.next(b));
  expect_normalised(b, 8);
  EvalOptions e;
  e.dir = dir.str();
  e.image_size = 4;
  e.mean = mean;
  e.std = stdev;
  EvalReader r(e);
  ASSERT_TRUE(r.next(b));
  expect_normalised(b, 4);
}
