// Colour augmentation (OpenCLIP's color_jitter / color_jitter_prob / gray_scale_prob): each
// adjustment against a float64 reference written here from torchvision's documented
// formulas (blends with black, the grey mean and the grey image; hue through the textbook
// RGB <-> HSV conversion), the draws, and the loader's transforms with and without it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <vector>

#include "coca/data/augment.h"
#include "coca/data/color_jitter.h"
#include "coca/data/image.h"
#include "coca/data/jpeg_decode.h"
#include "coca/data/loader.h"

using namespace coca;

namespace {

// ---- float64 reference, from the formulas in torchvision's documentation ----

double clamp01(double v) { return std::min(1.0, std::max(0.0, v)); }
double grey(double r, double g, double b) { return 0.2989 * r + 0.587 * g + 0.114 * b; }

// Planar [3, n] doubles.
using Planes = std::vector<double>;

Planes to_double(const std::vector<float>& x) { return Planes(x.begin(), x.end()); }

void ref_brightness(Planes& x, double f) {
  for (double& v : x) v = clamp01(v * f);
}

void ref_contrast(Planes& x, double f) {
  const size_t n = x.size() / 3;
  double mean = 0;
  for (size_t i = 0; i < n; ++i) mean += grey(x[i], x[n + i], x[2 * n + i]);
  mean /= static_cast<double>(n);
  for (double& v : x) v = clamp01(f * v + (1 - f) * mean);
}

void ref_saturation(Planes& x, double f) {
  const size_t n = x.size() / 3;
  for (size_t i = 0; i < n; ++i) {
    const double l = grey(x[i], x[n + i], x[2 * n + i]);
    for (int c = 0; c < 3; ++c) x[c * n + i] = clamp01(f * x[c * n + i] + (1 - f) * l);
  }
}

// RGB -> HSV (hue in turns), hue + shift mod 1, HSV -> RGB: the textbook conversion.
void ref_hue_pixel(double& r, double& g, double& b, double shift) {
  const double hi = std::max({r, g, b}), lo = std::min({r, g, b});
  const double v = hi;
  double h = 0, s = 0;
  if (hi > lo) {
    s = (hi - lo) / hi;
    const double d = hi - lo;
    if (r == hi) h = (g - b) / d;
    else if (g == hi) h = 2 + (b - r) / d;
    else h = 4 + (r - g) / d;
    h /= 6;
  }
  h += shift;
  h -= std::floor(h);
  const double sector = std::floor(h * 6), f = h * 6 - sector;
  const double p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  switch (static_cast<int>(sector) % 6) {
    case 0: r = v, g = t, b = p; break;
    case 1: r = q, g = v, b = p; break;
    case 2: r = p, g = v, b = t; break;
    case 3: r = p, g = q, b = v; break;
    case 4: r = t, g = p, b = v; break;
    default: r = v, g = p, b = q; break;
  }
}

void ref_hue(Planes& x, double shift) {
  const size_t n = x.size() / 3;
  for (size_t i = 0; i < n; ++i) ref_hue_pixel(x[i], x[n + i], x[2 * n + i], shift);
}

void ref_grayscale(Planes& x) {
  const size_t n = x.size() / 3;
  for (size_t i = 0; i < n; ++i) x[i] = x[n + i] = x[2 * n + i] = grey(x[i], x[n + i], x[2 * n + i]);
}

void ref_apply(Planes& x, ColorOp op, double f) {
  switch (op) {
    case ColorOp::brightness: return ref_brightness(x, f);
    case ColorOp::contrast: return ref_contrast(x, f);
    case ColorOp::saturation: return ref_saturation(x, f);
    case ColorOp::hue: return ref_hue(x, f);
  }
}

// ---- test images ----

// [3, n] in [0, 1]: 8-bit levels (ties between channels, greys, black and white pixels)
// and, for every other pixel, continuous values.
std::vector<float> random_planes(size_t n, uint64_t seed) {
  Generator g(seed);
  std::vector<float> x(3 * n);
  for (size_t i = 0; i < n; ++i) {
    const int kind = static_cast<int>(g.below(4));
    for (int c = 0; c < 3; ++c) {
      float v = kind == 0 ? static_cast<float>(g.uniform()) : static_cast<float>(g.below(256)) / 255.0f;
      if (kind == 3 && c > 0) v = x[i];  // grey
      x[c * n + i] = v;
    }
  }
  x[0] = x[n] = x[2 * n] = 0.0f;  // black
  x[1] = x[n + 1] = x[2 * n + 1] = 1.0f;  // white
  return x;
}

double max_diff(const std::vector<float>& a, const Planes& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(static_cast<double>(a[i]) - b[i]));
  return worst;
}

// Photo-like RGB: smooth colour fields with some noise, so that every adjustment shows.
std::vector<uint8_t> photo_rgb(int w, int h, uint64_t seed) {
  Generator g(seed);
  std::vector<uint8_t> px(static_cast<size_t>(w) * h * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) {
        const double v = 128 + 90 * std::sin(0.07 * x * (c + 1) + 0.05 * y * (3 - c)) + 20 * (g.uniform() - 0.5);
        px[(static_cast<size_t>(y) * w + x) * 3 + c] = static_cast<uint8_t>(std::clamp(v, 0.0, 255.0));
      }
  return px;
}

constexpr size_t kN = 37 * 23;

}  // namespace

TEST(ColorJitter, EachOpMatchesTheFloat64Reference) {
  for (uint64_t seed : {1, 2, 3}) {
    const std::vector<float> img = random_planes(kN, seed);
    for (float f : {0.0f, 0.35f, 0.9f, 1.0f, 1.6f}) {
      struct Case {
        const char* name;
        void (*op)(float*, size_t, float);
        void (*ref)(Planes&, double);
      };
      for (const Case& c : {Case{"brightness", adjust_brightness, ref_brightness},
                            Case{"contrast", adjust_contrast, ref_contrast},
                            Case{"saturation", adjust_saturation, ref_saturation}}) {
        std::vector<float> got = img;
        c.op(got.data(), kN, f);
        Planes want = to_double(img);
        c.ref(want, f);
        EXPECT_LE(max_diff(got, want), 2e-6) << c.name << " factor " << f << " seed " << seed;
      }
    }
    for (float shift : {-0.5f, -0.31f, -0.02f, 0.1f, 0.25f, 0.49f}) {
      std::vector<float> got = img;
      adjust_hue(got.data(), kN, shift);
      Planes want = to_double(img);
      ref_hue(want, shift);
      EXPECT_LE(max_diff(got, want), 4e-6) << "hue shift " << shift << " seed " << seed;
    }
  }
}

TEST(ColorJitter, HueShiftByZeroAndByHalfTwiceIsIdentity) {
  const std::vector<float> img = random_planes(kN, 11);
  std::vector<float> zero = img;
  adjust_hue(zero.data(), kN, 0.0f);
  // float32 through HSV and back: a few ulps of 1.0 (6e-8) per pixel at most.
  EXPECT_LE(max_diff(zero, to_double(img)), 1.5e-6);
  std::vector<float> twice = img;
  adjust_hue(twice.data(), kN, 0.5f);
  EXPECT_GT(max_diff(twice, to_double(img)), 0.1);  // half a turn changes colours
  adjust_hue(twice.data(), kN, 0.5f);
  EXPECT_LE(max_diff(twice, to_double(img)), 1.5e-6);
}

TEST(ColorJitter, GrayscaleHasEqualChannelsOfTheLuma) {
  const std::vector<float> img = random_planes(kN, 5);
  std::vector<float> got = img;
  to_grayscale(got.data(), kN);
  for (size_t i = 0; i < kN; ++i) {
    ASSERT_EQ(got[i], got[kN + i]) << i;
    ASSERT_EQ(got[i], got[2 * kN + i]) << i;
  }
  Planes want = to_double(img);
  ref_grayscale(want);
  EXPECT_LE(max_diff(got, want), 1e-6);
}

// The draw: the coin's frequency, every order of the four adjustments, factors in range, and
// only the adjustments whose range is not a single point.
TEST(ColorJitter, Draws) {
  ColorAugmentParams p{1.5, 0.4, 0.2, 0.1, 0.3, 0.25};
  Generator g(3);
  std::set<std::array<ColorOp, 4>> orders;
  int jittered = 0, grey = 0;
  const int draws = 20000;
  for (int i = 0; i < draws; ++i) {
    const ColorDraw d = draw_color_augment(p, g);
    grey += d.gray;
    if (d.count == 0) continue;
    ++jittered;
    ASSERT_EQ(d.count, 4);
    orders.insert(d.ops);
    for (int k = 0; k < 4; ++k) {
      const float f = d.factors[static_cast<size_t>(k)];
      switch (d.ops[static_cast<size_t>(k)]) {
        case ColorOp::brightness: ASSERT_TRUE(f >= 0.0f && f <= 2.5f) << f; break;  // [max(0, 1 - 1.5), 2.5]
        case ColorOp::contrast: ASSERT_TRUE(f >= 0.6f && f <= 1.4f) << f; break;
        case ColorOp::saturation: ASSERT_TRUE(f >= 0.8f && f <= 1.2f) << f; break;
        case ColorOp::hue: ASSERT_TRUE(f >= -0.1f && f <= 0.1f) << f; break;
      }
    }
  }
  EXPECT_NEAR(jittered / static_cast<double>(draws), 0.3, 0.015);
  EXPECT_NEAR(grey / static_cast<double>(draws), 0.25, 0.015);
  EXPECT_EQ(orders.size(), 24u);  // every permutation

  // Zero ranges are left out; the others keep their share of the orders.
  p = {0.0, 0.4, 0.0, 0.1, 1.0, 0.0};
  std::set<ColorOp> seen;
  for (int i = 0; i < 200; ++i) {
    const ColorDraw d = draw_color_augment(p, g);
    ASSERT_EQ(d.count, 2);
    for (int k = 0; k < 2; ++k) seen.insert(d.ops[static_cast<size_t>(k)]);
    EXPECT_FALSE(d.gray);
  }
  EXPECT_EQ(seen, (std::set<ColorOp>{ColorOp::contrast, ColorOp::hue}));

  // Probabilities 0 draw nothing: the generator is where it was.
  p = {0.4, 0.4, 0.4, 0.1, 0.0, 0.0};
  Generator a(9), b(9);
  EXPECT_FALSE(draw_color_augment(p, a).any());
  EXPECT_EQ(a.state(), b.state());
}

namespace {

struct Sample {
  std::vector<uint8_t> px;
  int w, h;
  RgbView view() const { return {px.data(), w, h, static_cast<int64_t>(w) * 3}; }
};

// The transform as it was before colour augmentation, spelled out: the crop box from `g`,
// resampled (or cropped) and normalised.
std::vector<float> plain_transform(const Sample& s, int out, const AugmentParams& p, uint64_t seed) {
  Generator g(seed);
  const CropBox b = random_resized_crop_box(s.w, s.h, p, g);
  std::vector<float> y(3 * static_cast<size_t>(out) * out);
  if (b.w == out && b.h == out)
    crop_rgb_normalized(s.view(), b.x, b.y, b.w, b.h, p.mean.data(), p.std.data(), y.data());
  else
    resample_rgb_normalized(s.view(), {double(b.x), double(b.y), double(b.w), double(b.h)}, out, out, p.filter,
                            p.mean.data(), p.std.data(), y.data());
  return y;
}

// `plain` (a normalised transform output without colour) through the reference colour
// augmentation of `d`, normalised again.
Planes expected_with_color(const std::vector<float>& plain, const ColorDraw& d, const AugmentParams& p) {
  const size_t n = plain.size() / 3;
  Planes x(plain.size());
  for (int c = 0; c < 3; ++c)
    for (size_t i = 0; i < n; ++i) x[c * n + i] = clamp01(plain[c * n + i] * double(p.std[c]) + double(p.mean[c]));
  for (int k = 0; k < d.count; ++k) ref_apply(x, d.ops[static_cast<size_t>(k)], d.factors[static_cast<size_t>(k)]);
  if (d.gray) ref_grayscale(x);
  for (int c = 0; c < 3; ++c)
    for (size_t i = 0; i < n; ++i) x[c * n + i] = (x[c * n + i] - p.mean[c]) / p.std[c];
  return x;
}

// The colour draw transform_sample / transform_encoded make for `seed`: after the crop's.
ColorDraw draw_after_crop(int w, int h, const AugmentParams& p, uint64_t seed) {
  Generator g(seed);
  random_resized_crop_box(w, h, p, g);
  return draw_color_augment(p.color, g);
}

}  // namespace

// Probability 0 (with ranges set) and probability 1 with all ranges 0 give today's output bit
// for bit; so does the format-2 path.
TEST(ColorJitter, OffOrNeutralIsBitIdenticalToThePlainTransform) {
  const Sample s{photo_rgb(61, 47, 1), 61, 47};
  const auto jpeg = encode_jpeg(s.px.data(), s.w, s.h, 3, 90);
  AugmentParams plain;
  plain.scale_min = 0.3;
  for (const ColorAugmentParams color : {ColorAugmentParams{0.4, 0.4, 0.4, 0.1, 0.0, 0.0},
                                         ColorAugmentParams{0.0, 0.0, 0.0, 0.0, 1.0, 0.0}}) {
    AugmentParams p = plain;
    p.color = color;
    for (int out : {24, 47}) {
      for (uint64_t seed = 0; seed < 20; ++seed) {
        std::vector<float> got(3 * out * out), want(3 * out * out);
        Generator g(seed);
        transform_sample(s.view(), out, p, g, got.data());
        ASSERT_EQ(got, plain_transform(s, out, plain, seed)) << "out " << out << " seed " << seed;
        Generator g1(seed), g2(seed);
        transform_encoded(jpeg.data(), jpeg.size(), out, p, g1, got.data());
        transform_encoded(jpeg.data(), jpeg.size(), out, plain, g2, want.data());
        ASSERT_EQ(got, want) << "format 2, out " << out << " seed " << seed;
      }
    }
  }
}

// With jitter and grayscale on, the transforms give the reference adjustments of the plain
// crop, in the drawn order, grayscale last.
TEST(ColorJitter, TransformsApplyTheDrawToTheCrop) {
  const Sample s{photo_rgb(61, 47, 2), 61, 47};
  const auto jpeg = encode_jpeg(s.px.data(), s.w, s.h, 3, 90);
  AugmentParams p;
  p.scale_min = 0.3;
  p.color = {0.6, 0.5, 0.7, 0.2, 0.8, 0.4};
  AugmentParams plain = p;
  plain.color = {};
  int jittered = 0, grey = 0;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    const int out = seed % 2 ? 32 : 47;
    const ColorDraw d = draw_after_crop(s.w, s.h, p, seed);
    jittered += d.count > 0;
    grey += d.gray;
    std::vector<float> got(3 * out * out), base(3 * out * out);
    Generator g(seed);
    transform_sample(s.view(), out, p, g, got.data());
    const Planes want = expected_with_color(plain_transform(s, out, plain, seed), d, p);
    ASSERT_LE(max_diff(got, want), 5e-5) << "seed " << seed;
    Generator g1(seed), g2(seed);
    transform_encoded(jpeg.data(), jpeg.size(), out, p, g1, got.data());
    transform_encoded(jpeg.data(), jpeg.size(), out, plain, g2, base.data());
    ASSERT_LE(max_diff(got, expected_with_color(base, d, p)), 5e-5) << "format 2, seed " << seed;
    if (d.gray) {
      const size_t n = static_cast<size_t>(out) * out;
      for (size_t i = 0; i < n; i += 7)
        ASSERT_NEAR(got[i] * p.std[0] + p.mean[0], got[2 * n + i] * p.std[2] + p.mean[2], 1e-6);
    }
  }
  EXPECT_GT(jittered, 20);
  EXPECT_GT(grey, 5);
  EXPECT_LT(grey, 35);
}
