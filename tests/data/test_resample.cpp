// The resampler against a double-precision reference written from the filter's definition:
// output pixel centre c = box0 + (o + 0.5) * scale in source coordinates, scale = box
// length / output size; source pixel j (centre j + 0.5) weighs K((j + 0.5 - c) / s) with
// s = max(scale, 1) (the kernel widened when shrinking: antialiasing), weights normalised
// to sum 1; separable, horizontal and vertical the same way; then clamped to 0..255.
// Random sizes, fractional boxes (also against the right and bottom edges), shrinking and
// enlarging, each filter. The fast path keeps float accumulators; the bound is 1/100 of an
// 8-bit level before normalisation (float rounding is far below that, a missing or
// misplaced tap far above).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "coca/data/image.h"
#include "coca/data/jpeg_decode.h"
#include "coca/data/loader.h"
#include "coca/data/resample.h"
#include "coca/tensor/random.h"

using namespace coca;

namespace {

double kernel(ResampleFilter f, double x) {
  const double t = std::abs(x);
  switch (f) {
    case ResampleFilter::bilinear: return std::max(0.0, 1.0 - t);  // triangle
    case ResampleFilter::bicubic: {                                 // Keys, a = -0.5
      const double a = -0.5;
      if (t < 1) return (a + 2) * t * t * t - (a + 3) * t * t + 1;
      if (t < 2) return a * t * t * t - 5 * a * t * t + 8 * a * t - 4 * a;
      return 0;
    }
    case ResampleFilter::lanczos3: {
      if (t >= 3) return 0;
      if (t == 0) return 1;
      const double px = M_PI * t;
      return 3 * std::sin(px) * std::sin(px / 3) / (px * px);
    }
  }
  return 0;
}

// weights[o][j] over all source pixels j of one axis.
std::vector<std::vector<double>> axis_weights(int in, double box0, double len, int out, ResampleFilter f) {
  const double scale = len / out, s = std::max(scale, 1.0);
  std::vector<std::vector<double>> w(static_cast<size_t>(out), std::vector<double>(static_cast<size_t>(in), 0.0));
  for (int o = 0; o < out; ++o) {
    const double c = box0 + (o + 0.5) * scale;
    double total = 0;
    for (int j = 0; j < in; ++j) total += w[o][j] = kernel(f, (j + 0.5 - c) / s);
    for (int j = 0; j < in; ++j) w[o][j] /= total;
  }
  return w;
}

// Reference output [out_h][out_w][3], clamped to 0..255, in double.
std::vector<double> reference(const std::vector<uint8_t>& px, int W, int H, int64_t stride, const SourceBox& b,
                              int out_w, int out_h, ResampleFilter f) {
  const auto wx = axis_weights(W, b.x0, b.w, out_w, f);
  const auto wy = axis_weights(H, b.y0, b.h, out_h, f);
  std::vector<double> tmp(static_cast<size_t>(H) * out_w * 3, 0.0);  // horizontal pass
  for (int j = 0; j < H; ++j)
    for (int x = 0; x < out_w; ++x)
      for (int i = 0; i < W; ++i) {
        if (wx[x][i] == 0) continue;
        for (int c = 0; c < 3; ++c) tmp[(static_cast<size_t>(j) * out_w + x) * 3 + c] += wx[x][i] * px[j * stride + i * 3 + c];
      }
  std::vector<double> out(static_cast<size_t>(out_h) * out_w * 3, 0.0);
  for (int y = 0; y < out_h; ++y)
    for (int j = 0; j < H; ++j) {
      if (wy[y][j] == 0) continue;
      for (size_t k = 0; k < static_cast<size_t>(out_w) * 3; ++k)
        out[static_cast<size_t>(y) * out_w * 3 + k] += wy[y][j] * tmp[static_cast<size_t>(j) * out_w * 3 + k];
    }
  for (double& v : out) v = std::clamp(v, 0.0, 255.0);
  return out;
}

const char* name(ResampleFilter f) {
  return f == ResampleFilter::bilinear ? "bilinear" : f == ResampleFilter::bicubic ? "bicubic" : "lanczos3";
}

}  // namespace

TEST(Resample, MatchesDoublePrecisionReference) {
  Generator g(2026);
  int cases = 0, enlarging = 0, at_edge = 0;
  for (int t = 0; t < 90; ++t) {
    const ResampleFilter f = t % 3 == 0 ? ResampleFilter::bilinear : t % 3 == 1 ? ResampleFilter::bicubic
                                                                                : ResampleFilter::lanczos3;
    const int W = 4 + static_cast<int>(g.below(150)), H = 4 + static_cast<int>(g.below(150));
    const int64_t stride = static_cast<int64_t>(W) * 3 + static_cast<int64_t>(g.below(3)) * 5;  // padded rows too
    std::vector<uint8_t> px(static_cast<size_t>(stride) * H);
    for (auto& v : px) v = static_cast<uint8_t>(g.below(256));  // noise: every tap shows
    SourceBox b;
    b.w = std::max(0.5, W * (0.05 + 0.95 * g.uniform()));
    b.h = std::max(0.5, H * (0.05 + 0.95 * g.uniform()));
    b.x0 = t % 4 == 0 ? W - b.w : (W - b.w) * g.uniform();  // every 4th against the right/bottom edge
    b.y0 = t % 4 == 0 ? H - b.h : (H - b.h) * g.uniform();
    if (t % 5 == 0) b = {0, 0, double(W), double(H)};  // the whole image
    const int out_w = 1 + static_cast<int>(g.below(t % 2 ? 60 : 200));
    const int out_h = 1 + static_cast<int>(g.below(t % 2 ? 60 : 200));
    enlarging += out_w > b.w || out_h > b.h;
    at_edge += t % 4 == 0;
    const auto want = reference(px, W, H, stride, b, out_w, out_h, f);
    const RgbView view{px.data(), W, H, stride};
    std::vector<float> got(static_cast<size_t>(3) * out_w * out_h);
    resample_rgb_normalized(view, b, out_w, out_h, f, kClipMean, kClipStd, got.data());
    std::vector<uint8_t> got8(static_cast<size_t>(3) * out_w * out_h);
    resample_rgb_u8(view, b, out_w, out_h, f, got8.data());
    double worst = 0;
    int worst8 = 0;
    const size_t plane = static_cast<size_t>(out_w) * out_h;
    for (size_t p = 0; p < plane; ++p)
      for (int c = 0; c < 3; ++c) {
        const double level = (got[c * plane + p] * kClipStd[c] + kClipMean[c]) * 255.0;  // back to 0..255
        worst = std::max(worst, std::abs(level - want[p * 3 + c]));
        worst8 = std::max(worst8, std::abs(int(got8[p * 3 + c]) - int(std::lround(want[p * 3 + c]))));
      }
    SCOPED_TRACE(testing::Message() << name(f) << " " << W << "x" << H << " box " << b.x0 << "," << b.y0 << " "
                                    << b.w << "x" << b.h << " -> " << out_w << "x" << out_h);
    EXPECT_LE(worst, 0.01) << "normalised output, in 8-bit levels";
    EXPECT_LE(worst8, 1) << "uint8 output (rounded; a level where the reference is near .5)";
    ++cases;
  }
  EXPECT_EQ(cases, 90);
  EXPECT_GT(enlarging, 10);  // the draw covers enlarging, not only shrinking
  EXPECT_GT(at_edge, 10);
}

// The loader's case: 224 px from a 256-px image, integer and fractional crops; and the
// same call twice gives the same bits (resume exactness needs only determinism).
TEST(Resample, LoaderSizesAndDeterminism) {
  Generator g(7);
  const int W = 341, H = 256;
  std::vector<uint8_t> px(static_cast<size_t>(W) * H * 3);
  for (auto& v : px) v = static_cast<uint8_t>(g.below(256));
  const RgbView view{px.data(), W, H, W * 3};
  for (const SourceBox b : {SourceBox{10, 5, 243, 250}, SourceBox{97.5, 0.25, 243.5, 255.75}, SourceBox{0, 0, 341, 256}}) {
    for (auto f : {ResampleFilter::bilinear, ResampleFilter::bicubic}) {
      const auto want = reference(px, W, H, W * 3, b, 224, 224, f);
      std::vector<float> got(3 * 224 * 224), again(3 * 224 * 224);
      resample_rgb_normalized(view, b, 224, 224, f, kClipMean, kClipStd, got.data());
      resample_rgb_normalized(view, b, 224, 224, f, kClipMean, kClipStd, again.data());
      EXPECT_EQ(got, again);
      double worst = 0;
      for (size_t p = 0; p < 224 * 224; ++p)
        for (int c = 0; c < 3; ++c)
          worst = std::max(worst, std::abs((got[c * 224 * 224 + p] * kClipStd[c] + kClipMean[c]) * 255.0 -
                                           want[p * 3 + c]));
      EXPECT_LE(worst, 0.01) << name(f) << " box " << b.x0 << "," << b.y0 << " " << b.w << "x" << b.h;
    }
  }
}

// transform_encoded decodes training crops with the fast IDCT/upsampling and the eval
// transform exactly: the eval output equals the resample of the exact scaled decode, bit
// for bit, and the fast decode differs from the exact one (so the comparison can tell).
TEST(Resample, EvalTransformDecodesExactly) {
  const int W = 300, H = 200, out = 100;
  std::vector<uint8_t> px(static_cast<size_t>(W) * H * 3);
  Generator g(11);
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x)
      for (int c = 0; c < 3; ++c)
        px[(static_cast<size_t>(y) * W + x) * 3 + c] = static_cast<uint8_t>(
            std::clamp(128 + 60 * std::sin(0.05 * x * (c + 1)) + 40 * std::cos(0.07 * y) + double(g.below(9)) - 4, 0.0, 255.0));
  const auto jpg = encode_jpeg(px.data(), W, H, 3, 90);
  AugmentParams p;
  p.random_crop = false;
  p.filter = ResampleFilter::bicubic;
  Generator unused(1);
  std::vector<float> got(3 * out * out), want(3 * out * out);
  transform_encoded(jpg.data(), jpg.size(), out, p, unused, got.data());
  // Centre square of the shorter side, at the DCT scale transform_encoded picks (1/2 here).
  const DctScale s = choose_dct_scale(H, H, out, out);
  ASSERT_LT(s.num * 1, s.denom) << "the test needs a reduced scale";
  const Image exact = decode_jpeg_scaled(jpg.data(), jpg.size(), s, false);
  const Image fast = decode_jpeg_scaled(jpg.data(), jpg.size(), s, true);
  ASSERT_NE(exact.rgb, fast.rgb) << "fast and exact decodes agree: the comparison below could not tell them apart";
  const double fx = double(exact.width) / W, fy = double(exact.height) / H;
  SourceBox box{(W - H) / 2.0 * fx, 0, H * fx, H * fy};
  box.w = std::min(box.w, exact.width - box.x0);
  box.h = std::min(box.h, exact.height - box.y0);
  resample_rgb_normalized({exact.rgb.data(), exact.width, exact.height, int64_t(exact.width) * 3}, box, out, out,
                          p.filter, kClipMean, kClipStd, want.data());
  EXPECT_EQ(got, want);
}
