// Shard format 2 (encoded images): writer/reader round trip and damage, the loader's JPEG
// decode (DCT scale choice, scaled decode vs full decode), v1/v2 agreement under the eval
// transform, exact resume with several decode threads, tokens at load time and the refusal
// of shard sets that cannot serve the model, the builder's store-or-re-encode rule.
#include <gtest/gtest.h>

#include <cmath>

#include "coca/data/h5.h"
#include "coca/data/jpeg_decode.h"
#include "coca/data/loader.h"
#include "coca/data/shard_build.h"
#include "data/fixtures.h"

using namespace coca;
using coca::testing::TempDir;
namespace fs = std::filesystem;

namespace {

// Photo-like pixels: smooth gradients, a few hard edges and noise, so that JPEG has real
// work to do and crops differ from each other.
std::vector<uint8_t> photo_rgb(int w, int h, uint64_t seed) {
  Generator g(seed);
  std::vector<uint8_t> px(static_cast<size_t>(w) * h * 3);
  const double cx = w * (0.3 + 0.4 * g.uniform()), cy = h * (0.3 + 0.4 * g.uniform());
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const double r = std::hypot(x - cx, y - cy);
      const bool inside = r < 0.25 * std::min(w, h);
      for (int c = 0; c < 3; ++c) {
        double v = 128 + 90 * std::sin(0.02 * (c + 1) * x + 0.03 * y + c) + (inside ? 40 : -20);
        v += static_cast<double>(g.below(21)) - 10;
        px[(static_cast<size_t>(y) * w + x) * 3 + c] = static_cast<uint8_t>(std::clamp(v, 0.0, 255.0));
      }
    }
  return px;
}

std::vector<uint8_t> photo_jpeg(int w, int h, uint64_t seed, int quality = 90) {
  const auto px = photo_rgb(w, h, seed);
  return encode_jpeg(px.data(), w, h, 3, quality);
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

struct Encoded {
  std::vector<uint8_t> bytes;
  int w = 0, h = 0;
  std::string caption;
};

// A format-2 shard set of `images` split into shards of `per_shard`; tokens stored when
// `tok` is given; checksums as told.
ShardIndex write_v2_set(const std::string& dir, const std::vector<Encoded>& images, int64_t per_shard,
                        const BpeTokenizer* tok = nullptr, int context = 0, bool checksum = true) {
  fs::create_directories(dir);
  ShardIndex index;
  index.format_version = kShardFormatVersionEncoded;
  index.image_format = "jpeg";
  index.image_size = 512;
  index.chunk_images = 4;
  index.context_length = tok ? context : 0;
  index.checksum = checksum ? kShardChecksumName : "none";
  for (size_t start = 0; start < images.size(); start += static_cast<size_t>(per_shard)) {
    ShardLayout layout;
    layout.image_format = ShardImageFormat::jpeg;
    layout.image_size = 512;
    layout.chunk_images = 4;
    layout.context_length = tok ? context : 0;
    layout.checksum = checksum;
    const std::string name = shard_file_name(static_cast<int64_t>(index.shards.size()));
    ShardWriter w((fs::path(dir) / name).string(), layout);
    const size_t end = std::min(images.size(), start + static_cast<size_t>(per_shard));
    for (size_t i = start; i < end; ++i) {
      const Encoded& e = images[i];
      std::vector<int32_t> ids;
      if (tok) ids = tok->encode_row(e.caption, context);
      w.add_encoded(e.bytes.data(), e.bytes.size(), e.w, e.h, e.caption, "k" + std::to_string(i),
                    tok ? ids.data() : nullptr);
    }
    w.close();
    index.shards.push_back({name, static_cast<int64_t>(end - start)});
    index.total_samples += static_cast<int64_t>(end - start);
  }
  index.save(dir);
  return index;
}

const char* kWords[] = {"red", "green", "a dog", "the sea", "two cats", "rain", "sunny hill", "old car"};

std::vector<Encoded> photo_set(int n, int w, int h) {
  std::vector<Encoded> out;
  for (int i = 0; i < n; ++i) {
    Encoded e;
    e.w = w + (i % 3) * 8;
    e.h = h + (i % 2) * 6;
    e.bytes = photo_jpeg(e.w, e.h, 100 + static_cast<uint64_t>(i));
    e.caption = std::string(kWords[i % 8]) + " number " + std::to_string(i);
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<float> floats(const Tensor& t) { return std::vector<float>(t.data<float>(), t.data<float>() + t.numel()); }

BpeTokenizer small_tokenizer() {
  return BpeTokenizer::from_merges({{"r", "e"}, {"re", "d</w>"}, {"o", "g</w>"}, {"d", "og</w>"}});
}

}  // namespace

TEST(ShardV2, RoundTripBytesOffsetsSizes) {
  TempDir t("v2rt");
  std::vector<Encoded> imgs = photo_set(7, 40, 30);
  imgs[3].bytes = encode_png(photo_rgb(20, 10, 9).data(), 20, 10, 3);  // any encoded format is stored as given
  imgs[3].w = 20, imgs[3].h = 10;
  write_v2_set(t.str(), imgs, 7);
  ShardReader r(t.str(shard_file_name(0)));
  EXPECT_EQ(r.format_version(), 2);
  EXPECT_TRUE(r.encoded());
  EXPECT_TRUE(r.has_checksums());
  ASSERT_EQ(r.size(), 7);
  int64_t expect_off = 0;
  for (int64_t i = 0; i < 7; ++i) {
    EXPECT_EQ(r.image_offset(i), expect_off);
    expect_off += static_cast<int64_t>(imgs[static_cast<size_t>(i)].bytes.size());
    EXPECT_EQ(r.stored_size(i), std::make_pair(imgs[static_cast<size_t>(i)].w, imgs[static_cast<size_t>(i)].h));
  }
  EXPECT_EQ(r.image_offset(7), expect_off);
  std::vector<uint8_t> got;
  r.read_encoded(2, 3, got);  // rows 2..4, one contiguous run
  std::vector<uint8_t> want;
  for (size_t i = 2; i < 5; ++i) want.insert(want.end(), imgs[i].bytes.begin(), imgs[i].bytes.end());
  EXPECT_EQ(got, want);
  EXPECT_EQ(r.read_captions(6, 1)[0], imgs[6].caption);
  EXPECT_EQ(r.read_keys(0, 1)[0], "k0");
  std::vector<uint8_t> px(16);
  EXPECT_NE(error_of([&] { r.read_images(0, 1, px.data()); }).find("encoded"), std::string::npos);
  EXPECT_NE(error_of([&] { r.read_encoded(5, 3, got); }).find(shard_file_name(0)), std::string::npos);
}

TEST(ShardV2, TruncatedBlobNamesTheShard) {
  TempDir t("v2trunc");
  write_v2_set(t.str(), photo_set(5, 40, 30), 5);
  const std::string path = t.str(shard_file_name(0));
  {
    h5::init();
    hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    ASSERT_GE(f, 0);
    hid_t d = H5Dopen2(f, "image_bytes", H5P_DEFAULT);
    ASSERT_GE(d, 0);
    const std::vector<hsize_t> dims = h5::dataset_dims(d, path);
    const hsize_t shorter = dims[0] - 100;
    ASSERT_GE(H5Dset_extent(d, &shorter), 0);
    H5Dclose(d);
    H5Fclose(f);
  }
  const std::string msg = error_of([&] { ShardReader r(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
}

TEST(ShardV2, DamagedBytesFailTheChecksumNamingTheShard) {
  TempDir t("v2crc");
  const auto imgs = photo_set(6, 40, 30);
  write_v2_set(t.str(), imgs, 6);
  const std::string path = t.str(shard_file_name(0));
  auto file = coca::testing::read_file(path);
  // The blob is stored uncompressed: find row 4's bytes in the file and flip one.
  const auto& needle = imgs[4].bytes;
  auto it = std::search(file.begin(), file.end(), needle.begin(), needle.end());
  ASSERT_NE(it, file.end());
  it[static_cast<std::ptrdiff_t>(needle.size() / 2)] ^= 0x5a;
  coca::testing::write_file(path, file);
  ShardReader r(path);
  std::vector<uint8_t> got;
  const std::string msg = error_of([&] { r.read_encoded(0, 6, got); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("checksum"), std::string::npos) << msg;
}

TEST(ShardV2, DamagedImageFailsOrSkipsItsShard) {
  TempDir t("v2bad");
  auto imgs = photo_set(12, 40, 30);
  imgs[6].bytes[3] = 0x00;  // row 2 of shard 1: the JPEG's first marker is no marker
  write_v2_set(t.str(), imgs, 4, nullptr, 0, /*checksum=*/false);  // no checksum to catch it first
  LoaderOptions o;
  o.dir = t.str();
  o.batch_size = 2;
  o.threads = 2;
  o.image_size = 16;
  o.shuffle_buffer = 1;
  const std::string msg = error_of([&] {
    ShardLoader l(o);
    Batch b;
    while (l.next(b)) {
    }
  });
  EXPECT_NE(msg.find(shard_file_name(1)), std::string::npos) << msg;
  EXPECT_NE(msg.find("row 2"), std::string::npos) << msg;
  o.skip_bad_shards = true;
  ShardLoader l(o);
  Batch b;
  int64_t seen = 0;
  while (l.next(b)) seen += b.images.size(0);
  EXPECT_EQ(l.batches_this_epoch() * 2, seen);
  EXPECT_FALSE(l.state().skipped.empty());
  EXPECT_EQ(l.state().skipped.front().shard, 1);
}

TEST(JpegDecode, ChoosesTheSmallestCoveringScale) {
  // Only 1/2, 1/4 and 1/8 below 1: libjpeg-turbo's 3/8 to 7/8 have no SIMD code.
  EXPECT_EQ(choose_dct_scale(2000, 2000, 224, 224), (DctScale{1, 8}));   // 250 >= 224
  EXPECT_EQ(choose_dct_scale(1791, 1791, 224, 224), (DctScale{1, 4}));   // 1791/8 = 223.9 < 224
  EXPECT_EQ(choose_dct_scale(512, 512, 224, 224), (DctScale{1, 2}));     // 256
  EXPECT_EQ(choose_dct_scale(448, 448, 224, 224), (DctScale{1, 2}));     // exactly 224
  EXPECT_EQ(choose_dct_scale(447, 447, 224, 224), (DctScale{1, 1}));     // 1/2 gives 223.5
  EXPECT_EQ(choose_dct_scale(450, 1000, 224, 224), (DctScale{1, 2}));    // the narrow side decides
  EXPECT_EQ(choose_dct_scale(1000, 450, 224, 224), (DctScale{1, 2}));
  EXPECT_EQ(choose_dct_scale(300, 1000, 224, 224), (DctScale{1, 1}));
  EXPECT_EQ(choose_dct_scale(100, 100, 224, 224), (DctScale{1, 1}));     // upscaling: full size
  EXPECT_EQ(dct_scaled(333, {3, 8}), 125);                               // ceil(124.875)
}

TEST(JpegDecode, ScaledDecodeIsCloseToFullDecodeAndResize) {
  const int W = 512, H = 384;
  const auto jpg = photo_jpeg(W, H, 7);
  const Image full = decode_image(jpg);
  const Image half = decode_jpeg_scaled(jpg.data(), jpg.size(), {1, 2});
  ASSERT_EQ(half.width, 256);
  ASSERT_EQ(half.height, 192);
  std::vector<uint8_t> ref(static_cast<size_t>(256) * 192 * 3);
  const RgbView fv{full.rgb.data(), W, H, static_cast<int64_t>(W) * 3};
  resample_rgb_u8(fv, {0, 0, double(W), double(H)}, 256, 192, ResampleFilter::bilinear, ref.data());
  double sum = 0;
  for (size_t i = 0; i < ref.size(); ++i) sum += std::abs(int(ref[i]) - int(half.rgb[i]));
  EXPECT_LT(sum / static_cast<double>(ref.size()), 3.0);  // mean absolute difference, 8-bit levels

  // The loader's transform (crop drawn on the full image, decoded at a reduced scale)
  // against the same crop taken from the full decode.
  AugmentParams p;
  p.random_crop = true;
  p.scale_min = 0.5;
  p.scale_max = 1.0;
  p.filter = ResampleFilter::bilinear;
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    Generator g1(seed), g2(seed);
    std::vector<float> got(3 * 96 * 96), want(3 * 96 * 96);
    transform_encoded(jpg.data(), jpg.size(), 96, p, g1, got.data());
    const CropBox b = random_resized_crop_box(W, H, p, g2);
    ASSERT_LT(choose_dct_scale(b.w, b.h, 96, 96).num * 8, choose_dct_scale(b.w, b.h, 96, 96).denom * 8)
        << "the test needs a reduced scale";
    resample_rgb_normalized(fv, {double(b.x), double(b.y), double(b.w), double(b.h)}, 96, 96,
                            ResampleFilter::bilinear, kClipMean, kClipStd, want.data());
    double d = 0;
    for (size_t i = 0; i < got.size(); ++i) d += std::abs(got[i] - want[i]);
    EXPECT_LT(d / static_cast<double>(got.size()), 0.05) << "seed " << seed;  // ~3 levels / (255 * 0.27)
  }
}

TEST(JpegDecode, DamagedDataIsAnError) {
  auto jpg = photo_jpeg(64, 48, 3);
  jpg.resize(jpg.size() / 2);  // truncated: libjpeg-turbo would fill in grey with a warning
  EXPECT_THROW(decode_jpeg_scaled(jpg.data(), jpg.size(), {1, 1}), ImageDecodeError);
}

// v1 made from the decoded JPEG pixels (shorter side to H, centre crop, as coca-shard does)
// against v2 holding the JPEG itself: under the eval transform both show the same pixels.
// Image sides below 8/7 H keep the decode at full scale; the remaining difference is v1's
// rounding to 8 bits in between (half a level).
TEST(ShardV2, SameBatchesAsV1UnderTheEvalTransform) {
  TempDir t("v1v2");
  const int Hout = 48;
  std::vector<Encoded> imgs;
  for (int i = 0; i < 10; ++i) {
    Encoded e;
    e.w = 50 + (i % 3) * 2, e.h = 52 - (i % 2) * 3;
    e.bytes = photo_jpeg(e.w, e.h, 300 + static_cast<uint64_t>(i));
    e.caption = "c" + std::to_string(i);
    imgs.push_back(e);
  }
  write_v2_set(t.str("v2"), imgs, 4);
  {
    const std::string dir = t.str("v1");
    fs::create_directories(dir);
    ShardIndex index;
    index.image_size = Hout;
    index.chunk_images = 4;
    for (size_t start = 0; start < imgs.size(); start += 4) {
      ShardLayout layout;
      layout.image_size = Hout;
      layout.chunk_images = 4;
      const std::string name = shard_file_name(static_cast<int64_t>(index.shards.size()));
      ShardWriter w((fs::path(dir) / name).string(), layout);
      const size_t end = std::min(imgs.size(), start + 4);
      for (size_t i = start; i < end; ++i) {
        const Image px = resize_shorter_center_crop(decode_image(imgs[i].bytes), Hout, ResampleFilter::bicubic);
        w.add(px.rgb.data(), imgs[i].caption, "k" + std::to_string(i));
      }
      w.close();
      index.shards.push_back({name, static_cast<int64_t>(end - start)});
      index.total_samples += static_cast<int64_t>(end - start);
    }
    index.save(dir);
  }
  auto max_diff = [](const std::vector<float>& a, const std::vector<float>& b) {
    float m = 0;
    for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
    return m;
  };
  const float tol = 0.6f / (255.0f * 0.26f);
  // EvalReader
  EvalOptions eo;
  eo.batch_size = 3;
  eo.image_size = Hout;
  eo.dir = t.str("v1");
  EvalReader r1(eo);
  eo.dir = t.str("v2");
  EvalReader r2(eo);
  Batch b1, b2;
  int batches = 0;
  while (r1.next(b1)) {
    ASSERT_TRUE(r2.next(b2));
    EXPECT_EQ(b1.keys, b2.keys);
    ASSERT_EQ(b1.images.numel(), b2.images.numel());
    EXPECT_LT(max_diff(floats(b1.images), floats(b2.images)), tol) << "batch " << batches;
    ++batches;
  }
  EXPECT_EQ(batches, 4);
  // The training loader without augmentation, shuffled the same way.
  LoaderOptions lo;
  lo.batch_size = 3;
  lo.image_size = Hout;
  lo.augment = false;
  lo.filter = ResampleFilter::bicubic;
  lo.threads = 2;
  lo.shuffle_buffer = 5;
  lo.seed = 9;
  lo.dir = t.str("v1");
  ShardLoader l1(lo);
  lo.dir = t.str("v2");
  ShardLoader l2(lo);
  while (l1.next(b1)) {
    ASSERT_TRUE(l2.next(b2));
    EXPECT_EQ(b1.indices, b2.indices);
    EXPECT_LT(max_diff(floats(b1.images), floats(b2.images)), tol);
  }
}

// With and without colour jitter and grayscale.
TEST(ShardV2, ResumesExactlyWithSeveralDecodeThreads) {
  TempDir t("v2resume");
  write_v2_set(t.str(), photo_set(40, 200, 150), 9);
  for (const bool color : {false, true}) {
    LoaderOptions o;
    o.dir = t.str();
    o.batch_size = 4;
    o.image_size = 64;
    o.threads = 3;
    o.seed = 77;
    o.shuffle_buffer = 7;
    o.scale_min = 0.3;  // wide crops: DCT scales from 1/2 to 1 in play
    if (color) o.color = {0.4, 0.4, 0.4, 0.1, 0.8, 0.2};
    auto run = [&](ShardLoader& l, int64_t limit) {
      std::vector<std::vector<float>> out;
      Batch b;
      while ((limit < 0 || static_cast<int64_t>(out.size()) < limit) && l.next(b)) out.push_back(floats(b.images));
      return out;
    };
    ShardLoader whole(o);
    whole.start_epoch(1);
    const auto all = run(whole, -1);
    ASSERT_EQ(all.size(), 10u);
    ShardLoader first(o);
    first.start_epoch(1);
    run(first, 4);
    ShardLoader second(o);
    second.restore(LoaderState::from_json(first.state().to_json()));
    const auto rest = run(second, -1);
    ASSERT_EQ(rest.size(), 6u);
    for (size_t i = 0; i < rest.size(); ++i) EXPECT_EQ(rest[i], all[4 + i]) << "batch " << 4 + i << " color " << color;
    EXPECT_NE(all[0], all[1]);
  }
}

TEST(ShardV2, TokensAtLoadTimeEqualStoredTokens) {
  TempDir t("v2tok");
  const BpeTokenizer tok = small_tokenizer();
  const auto imgs = photo_set(14, 40, 30);
  write_v2_set(t.str("stored"), imgs, 5, &tok, 9);
  write_v2_set(t.str("bare"), imgs, 5);
  LoaderOptions o;
  o.batch_size = 3;
  o.image_size = 16;
  o.threads = 2;
  o.shuffle_buffer = 4;
  o.context_length = 9;
  o.vocab_size = tok.vocab_size();
  o.dir = t.str("stored");
  ShardLoader stored(o);
  o.dir = t.str("bare");
  o.tokenizer = std::make_shared<const BpeTokenizer>(tok);
  ShardLoader bare(o);
  Batch a, b;
  int n = 0;
  while (stored.next(a)) {
    ASSERT_TRUE(bare.next(b));
    ASSERT_TRUE(b.tokens.defined());
    ASSERT_EQ(b.tokens.shape(), a.tokens.shape());
    EXPECT_EQ(b.indices, a.indices);
    for (int64_t i = 0; i < a.tokens.numel(); ++i) EXPECT_EQ(a.tokens.data<int32_t>()[i], b.tokens.data<int32_t>()[i]);
    ++n;
  }
  EXPECT_EQ(n, 4);
}

TEST(ShardV2, RefusesTextTheModelCannotTake) {
  TempDir t("v2refuse");
  const BpeTokenizer tok = small_tokenizer();  // 512 bytes + 4 merges + sot + eot = 518 ids
  const auto imgs = photo_set(4, 40, 30);
  write_v2_set(t.str("stored"), imgs, 4, &tok, 77);
  write_v2_set(t.str("bare"), imgs, 4);
  LoaderOptions o;
  o.dir = t.str("stored");
  o.context_length = 76;
  o.model_name = "coca_ViT-B-32";
  std::string msg = error_of([&] { ShardLoader l(o); });
  EXPECT_NE(msg.find("77-token"), std::string::npos) << msg;
  EXPECT_NE(msg.find("coca_ViT-B-32 wants 76"), std::string::npos) << msg;
  o.context_length = 77;
  EXPECT_EQ(error_of([&] { ShardLoader l(o); }), "");
  // Tokenized at load time with a vocabulary larger than the model's.
  o.dir = t.str("bare");
  o.tokenizer = std::make_shared<const BpeTokenizer>(tok);
  o.vocab_size = 500;
  msg = error_of([&] { ShardLoader l(o); });
  EXPECT_NE(msg.find("518"), std::string::npos) << msg;
  EXPECT_NE(msg.find("500"), std::string::npos) << msg;
  o.vocab_size = 518;
  EXPECT_EQ(error_of([&] { ShardLoader l(o); }), "");
}

TEST(ShardV2, MixedSetIsRefused) {
  TempDir t("v2set");
  write_v2_set(t.str(), photo_set(8, 40, 30), 4);
  // Replace shard 1 by a raw (format 1) shard of the same size.
  ShardLayout raw;
  raw.image_size = 512;
  raw.chunk_images = 4;
  {
    ShardWriter w(t.str(shard_file_name(1)), raw);
    const auto px = coca::testing::solid_rgb(512, 512, 1, 2, 3);
    for (int i = 0; i < 4; ++i) w.add(px.data(), "c", "k");
    w.close();
  }
  LoaderOptions o;
  o.dir = t.str();
  o.batch_size = 2;
  o.image_size = 16;
  o.shuffle_buffer = 1;
  const std::string msg = error_of([&] {
    ShardLoader l(o);
    Batch b;
    while (l.next(b)) {
    }
  });
  EXPECT_NE(msg.find(shard_file_name(1)), std::string::npos) << msg;
  EXPECT_NE(msg.find("cannot mix image formats"), std::string::npos) << msg;
}

TEST(ShardV2, BuilderStoresSmallJpegsAsGivenAndReencodesTheRest) {
  TempDir t("v2build");
  const auto small = photo_jpeg(120, 90, 1);
  const auto big = photo_jpeg(700, 300, 2);
  const auto png = encode_png(photo_rgb(60, 80, 3).data(), 60, 80, 3);
  coca::testing::write_file(t.path() / "small.jpg", small);
  coca::testing::write_file(t.path() / "big.jpg", big);
  coca::testing::write_file(t.path() / "pic.png", png);
  std::vector<WorkItem> items;
  for (const char* name : {"small.jpg", "big.jpg", "pic.png"}) {
    WorkItem it;
    it.key = name;
    it.image.path = t.str(name);
    it.captions = {std::string("caption of ") + name};
    items.push_back(it);
  }
  BuildOptions bo;
  bo.out_dir = t.str("out");
  bo.layout.image_format = ShardImageFormat::jpeg;
  bo.layout.image_size = 256;  // --max-side
  bo.reencode = Reencode::jpeg;  // auto would store the PNG as given (test_shard_reencode.cpp)
  bo.progress = false;
  SkipReport rep;
  const LocalShards out = build_shards(items, bo, rep);
  ASSERT_EQ(out.temp_paths.size(), 1u);
  ShardReader r(out.temp_paths[0]);
  ASSERT_EQ(r.size(), 3);
  std::vector<uint8_t> bytes;
  r.read_encoded(0, 1, bytes);
  EXPECT_EQ(bytes, small);
  EXPECT_EQ(r.stored_size(0), std::make_pair(120, 90));
  r.read_encoded(1, 1, bytes);
  EXPECT_EQ(r.stored_size(1), std::make_pair(256, 110));  // 300 * 256 / 700 = 109.7
  EXPECT_EQ(sniff_image_format(bytes.data(), bytes.size()), ImageFormat::jpeg);
  EXPECT_EQ(decode_image(bytes).width, 256);
  r.read_encoded(2, 1, bytes);
  EXPECT_EQ(sniff_image_format(bytes.data(), bytes.size()), ImageFormat::jpeg);  // the PNG re-encoded
  EXPECT_EQ(r.stored_size(2), std::make_pair(60, 80));
}
