// coca-shard --reencode (format 2): which sources are stored as given and how the rest are
// re-encoded; PNG sources give the loader exactly the pixels that format 1 gives it; the
// loader checks PNG headers against the recorded sizes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>

#include "coca/data/loader.h"
#include "coca/data/shard_build.h"
#include "data/fixtures.h"

using namespace coca;
using coca::testing::run_tool;
using coca::testing::TempDir;
using coca::testing::write_file;
using coca::testing::noisy_rgb;
namespace fs = std::filesystem;

namespace {

std::string slurp(const std::string& p) {
  const auto b = coca::testing::read_file(p);
  return std::string(b.begin(), b.end());
}


// An emoji-like graphic: flat-coloured disc and bar on a transparent background, the disc's
// edge antialiased (partial alpha). RGBA.
std::vector<uint8_t> flat_rgba(int s, uint64_t seed) {
  Generator g(seed);
  const uint8_t disc[3] = {static_cast<uint8_t>(g.below(256)), static_cast<uint8_t>(g.below(256)),
                           static_cast<uint8_t>(g.below(256))};
  const uint8_t bar[3] = {static_cast<uint8_t>(g.below(256)), 30, 200};
  const double cx = s * (0.3 + 0.4 * g.uniform()), cy = s * (0.3 + 0.4 * g.uniform()), r = s * 0.3;
  std::vector<uint8_t> px(static_cast<size_t>(s) * s * 4, 0);
  for (int y = 0; y < s; ++y)
    for (int x = 0; x < s; ++x) {
      uint8_t* p = px.data() + (static_cast<size_t>(y) * s + x) * 4;
      const double cover = std::clamp(r - std::hypot(x + 0.5 - cx, y + 0.5 - cy) + 0.5, 0.0, 1.0);
      if (y > s * 3 / 4 && x > s / 8 && x < s * 7 / 8) {
        p[0] = bar[0], p[1] = bar[1], p[2] = bar[2], p[3] = 255;
      } else if (cover > 0) {
        p[0] = disc[0], p[1] = disc[1], p[2] = disc[2], p[3] = static_cast<uint8_t>(std::lround(255 * cover));
      }
    }
  return px;
}

std::vector<float> floats(const Tensor& t) { return std::vector<float>(t.data<float>(), t.data<float>() + t.numel()); }

// One item per file in `dir`, captioned by its name.
std::vector<WorkItem> items_of(const TempDir& t, const std::vector<std::string>& names) {
  std::vector<WorkItem> items;
  for (const auto& name : names) {
    WorkItem it;
    it.key = name;
    it.image.path = t.str(name);
    it.captions = {"caption of " + name};
    items.push_back(it);
  }
  return items;
}

// The stored bytes of every row of a one-shard build.
std::vector<std::vector<uint8_t>> build_one_shard(const std::vector<WorkItem>& items, const std::string& out,
                                                  Reencode reencode, int max_side,
                                                  std::vector<std::pair<int, int>>* sizes = nullptr) {
  BuildOptions bo;
  bo.out_dir = out;
  bo.layout.image_format = ShardImageFormat::jpeg;
  bo.layout.image_size = max_side;
  bo.reencode = reencode;
  bo.progress = false;
  SkipReport rep;
  const LocalShards shards = build_shards(items, bo, rep);
  EXPECT_EQ(rep.skipped(), 0) << rep.summary();
  EXPECT_EQ(shards.temp_paths.size(), 1u);
  ShardReader r(shards.temp_paths.at(0));
  std::vector<std::vector<uint8_t>> rows(static_cast<size_t>(r.size()));
  for (int64_t i = 0; i < r.size(); ++i) {
    r.read_encoded(i, 1, rows[static_cast<size_t>(i)]);
    if (sizes) sizes->push_back(r.stored_size(i));
  }
  return rows;
}

ImageFormat format_of(const std::vector<uint8_t>& b) { return sniff_image_format(b.data(), b.size()); }

}  // namespace

TEST(Reencode, AutoStoresPngAndWebpAsGivenAndKeepsLosslessSourcesLossless) {
  TempDir t("reauto");
  const auto px = noisy_rgb(80, 60, 1);
  const auto big = noisy_rgb(200, 100, 2);
  write_file(t.path() / "fit.png", encode_png(px.data(), 80, 60, 3));
  write_file(t.path() / "fit_lossless.webp", encode_webp(px.data(), 80, 60, 3, -1));
  write_file(t.path() / "fit_lossy.webp", encode_webp(px.data(), 80, 60, 3, 80));
  write_file(t.path() / "fit.jpg", encode_jpeg(px.data(), 80, 60, 3, 90));
  write_file(t.path() / "big.png", encode_png(big.data(), 200, 100, 3));
  write_file(t.path() / "big_lossless.webp", encode_webp(big.data(), 200, 100, 3, -1));
  write_file(t.path() / "big_lossy.webp", encode_webp(big.data(), 200, 100, 3, 80));
  write_file(t.path() / "big.jpg", encode_jpeg(big.data(), 200, 100, 3, 90));
  const std::vector<std::string> names = {"fit.png",  "fit_lossless.webp", "fit_lossy.webp", "fit.jpg",
                                          "big.png",  "big_lossless.webp", "big_lossy.webp", "big.jpg"};
  const auto items = items_of(t, names);
  std::vector<std::pair<int, int>> sizes;
  const auto rows = build_one_shard(items, t.str("auto"), Reencode::automatic, 100, &sizes);
  ASSERT_EQ(rows.size(), 8u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(rows[i], coca::testing::read_file(t.path() / names[i])) << names[i] << " is stored as given";
    EXPECT_EQ(sizes[i], std::make_pair(80, 60)) << names[i];
  }
  EXPECT_EQ(format_of(rows[4]), ImageFormat::png);  // lossless sources stay lossless
  EXPECT_EQ(format_of(rows[5]), ImageFormat::png);
  EXPECT_EQ(format_of(rows[6]), ImageFormat::jpeg);  // lossy ones become JPEG
  EXPECT_EQ(format_of(rows[7]), ImageFormat::jpeg);
  for (size_t i = 4; i < 8; ++i) {
    EXPECT_EQ(sizes[i], std::make_pair(100, 50)) << names[i];
    EXPECT_EQ(decode_image(rows[i]).width, 100) << names[i];
  }
  // The resized PNG holds exactly the resized pixels.
  Image want;
  want.width = 100, want.height = 50;
  want.rgb.resize(100 * 50 * 3);
  resample_rgb_u8({big.data(), 200, 100, 600}, {0, 0, 200, 100}, 100, 50, ResampleFilter::bicubic, want.rgb.data());
  EXPECT_EQ(decode_image(rows[4]).rgb, want.rgb);
}

TEST(Reencode, JpegAndPngModes) {
  TempDir t("remodes");
  const auto px = noisy_rgb(80, 60, 3);
  write_file(t.path() / "a.png", encode_png(px.data(), 80, 60, 3));
  write_file(t.path() / "b.webp", encode_webp(px.data(), 80, 60, 3, -1));
  write_file(t.path() / "c.jpg", encode_jpeg(px.data(), 80, 60, 3, 90));
  const auto items = items_of(t, {"a.png", "b.webp", "c.jpg"});
  const auto jpeg = build_one_shard(items, t.str("jpeg"), Reencode::jpeg, 100);
  ASSERT_EQ(jpeg.size(), 3u);
  EXPECT_EQ(format_of(jpeg[0]), ImageFormat::jpeg);
  EXPECT_EQ(format_of(jpeg[1]), ImageFormat::jpeg);
  EXPECT_EQ(jpeg[2], coca::testing::read_file(t.path() / "c.jpg"));
  const auto png = build_one_shard(items, t.str("png"), Reencode::png, 100);
  ASSERT_EQ(png.size(), 3u);
  for (const auto& b : png) EXPECT_EQ(format_of(b), ImageFormat::png);
  EXPECT_EQ(decode_image(png[0]).rgb, px);  // lossless all the way
  EXPECT_EQ(decode_image(png[2]).rgb, decode_image(coca::testing::read_file(t.path() / "c.jpg")).rgb);
}

// A PNG whose header disagrees with image_sizes fails the chunk read, as a JPEG's does.
TEST(Reencode, LoaderChecksPngHeaders) {
  TempDir t("repnghdr");
  ShardLayout layout;
  layout.image_format = ShardImageFormat::jpeg;
  layout.image_size = 512;
  const auto png = encode_png(noisy_rgb(20, 10, 4).data(), 20, 10, 3);
  {
    ShardWriter w(t.str(shard_file_name(0)), layout);
    w.add_encoded(png.data(), png.size(), 20, 10, "c", "k0");
    w.add_encoded(png.data(), png.size(), 20, 11, "c", "k1");  // recorded wrong
    w.close();
  }
  ShardIndex index;
  index.format_version = kShardFormatVersionEncoded;
  index.image_format = "jpeg";
  index.image_size = 512;
  index.shards.push_back({shard_file_name(0), 2});
  index.total_samples = 2;
  index.save(t.str());
  EvalOptions eo;
  eo.dir = t.str();
  eo.image_size = 8;
  EvalReader r(eo);
  Batch b;
  std::string msg;
  try {
    r.next(b);
  } catch (const std::exception& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("row 1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("header says 20x10, image_sizes says 20x11"), std::string::npos) << msg;
}

// Flat-coloured PNG graphics (with partial alpha) and a lossless WebP, sharded by coca-shard as
// format 1 and as format 2 with --reencode auto: the batches are bit-identical, under the eval
// transform and under the training loader with random crops and colour jitter. Format 1
// resizes and centre-crops at shard time, so the sources are squares of exactly the stored
// size (64 px): format 1 then keeps their decoded pixels unchanged, and format 2 stores the
// files as given, to be decoded by the same decoder at load time.
TEST(Reencode, PngSourcesGiveTheBatchesOfFormat1) {
  TempDir t("repng");
  const int S = 64;
  std::string table = "filepath\ttitle\n";
  for (int i = 0; i < 14; ++i) {
    const std::string name = "g" + std::to_string(i) + (i == 5 ? ".webp" : ".png");
    const auto rgba = flat_rgba(S, 40 + static_cast<uint64_t>(i));
    write_file(t.path() / "img" / name, i == 5 ? encode_webp(rgba.data(), S, S, 4, -1) : encode_png(rgba.data(), S, S, 4));
    table += "img/" + name + "\temoji number " + std::to_string(i) + "\n";
  }
  coca::testing::write_text(t.path() / "table.tsv", table);
  const std::string common = "--format csv --input " + t.str("table.tsv") + " --samples-per-shard 5 --chunk-images 2 --quiet";
  ASSERT_EQ(run_tool(common + " --output " + t.str("v1") + " --image-format raw --image-size 64", t.str("log1")), 0)
      << slurp(t.str("log1"));
  ASSERT_EQ(run_tool(common + " --output " + t.str("v2") + " --max-side 64 --reencode auto", t.str("log2")), 0)
      << slurp(t.str("log2"));
  EXPECT_EQ(ShardIndex::load(t.str("v2")).extra.value("reencode", std::string()), "auto");
  {
    ShardReader r(ShardIndex::load(t.str("v2")).shard_path(t.str("v2"), 1));
    std::vector<uint8_t> bytes;
    r.read_encoded(0, 1, bytes);  // row 5: the WebP
    EXPECT_EQ(bytes, coca::testing::read_file(t.path() / "img" / "g5.webp"));
  }
  for (const int out : {64, 48}) {
    EvalOptions eo;
    eo.batch_size = 4;
    eo.image_size = out;
    eo.dir = t.str("v1");
    EvalReader r1(eo);
    eo.dir = t.str("v2");
    EvalReader r2(eo);
    Batch b1, b2;
    int batches = 0;
    while (r1.next(b1)) {
      ASSERT_TRUE(r2.next(b2));
      EXPECT_EQ(b1.keys, b2.keys);
      EXPECT_EQ(floats(b1.images), floats(b2.images)) << "eval at " << out << " px, batch " << batches;
      ++batches;
    }
    EXPECT_EQ(batches, 4);
  }
  LoaderOptions lo;
  lo.batch_size = 3;
  lo.image_size = 48;
  lo.scale_min = 0.3;
  lo.color = {0.4, 0.4, 0.4, 0.1, 0.8, 0.2};
  lo.threads = 2;
  lo.shuffle_buffer = 5;
  lo.seed = 11;
  lo.dir = t.str("v1");
  ShardLoader l1(lo);
  lo.dir = t.str("v2");
  ShardLoader l2(lo);
  Batch b1, b2;
  int batches = 0;
  for (int epoch = 0; epoch < 2; ++epoch) {
    l1.start_epoch(epoch);
    l2.start_epoch(epoch);
    while (l1.next(b1)) {
      ASSERT_TRUE(l2.next(b2));
      EXPECT_EQ(b1.indices, b2.indices);
      EXPECT_EQ(floats(b1.images), floats(b2.images)) << "training batch " << batches;
      ++batches;
    }
  }
  EXPECT_EQ(batches, 8);  // 14 samples: 4 full batches of 3 per epoch
}

TEST(Reencode, BadValueIsOneLine) {
  TempDir t("rebad");
  write_file(t.path() / "a.png", coca::testing::png_solid(8, 8, 1, 2, 3));
  coca::testing::write_text(t.path() / "table.tsv", "filepath\ttitle\na.png\tred\n");
  const std::string common = "--format csv --input " + t.str("table.tsv") + " --quiet --output " + t.str("o");
  EXPECT_NE(run_tool(common + " --reencode webp", t.str("log")), 0);
  const std::string err = slurp(t.str("log"));
  EXPECT_EQ(err, "coca-shard: error: unknown --reencode 'webp' (auto, jpeg, png)\n");
  EXPECT_NE(run_tool(common + " --image-format raw --reencode png", t.str("log")), 0);
  EXPECT_NE(slurp(t.str("log")).find("--reencode applies to --image-format jpeg"), std::string::npos)
      << slurp(t.str("log"));
  EXPECT_EQ(run_tool(common + " --reencode png", t.str("log")), 0) << slurp(t.str("log"));
}
