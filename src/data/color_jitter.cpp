#include "coca/data/color_jitter.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

namespace coca {

namespace {

inline float clamp01(float v) { return v < 0.f ? 0.f : v > 1.f ? 1.f : v; }

inline float gray_of(float r, float g, float b) { return 0.2989f * r + 0.587f * g + 0.114f * b; }

// f * x + (1 - f) * other[i] (other_scalar when other is null), clamped: torchvision's _blend.
void blend(float* planes, size_t n, float f, const float* other, float other_scalar) {
  const float keep = 1.0f - f;
  for (int c = 0; c < 3; ++c) {
    float* x = planes + static_cast<size_t>(c) * n;
    if (other) {
      for (size_t i = 0; i < n; ++i) x[i] = clamp01(f * x[i] + keep * other[i]);
    } else {
      const float o = keep * other_scalar;
      for (size_t i = 0; i < n; ++i) x[i] = clamp01(f * x[i] + o);
    }
  }
}

float uniform_in(Generator& g, double lo, double hi) { return static_cast<float>(lo + (hi - lo) * g.uniform()); }

// Eight floats; GCC/Clang vector extensions (as in resample.cpp): comparisons give lane masks
// and `mask ? a : b` selects per lane, so the hue loop runs without per-pixel branches.
using V8 = float __attribute__((vector_size(32)));
using V8i = int __attribute__((vector_size(32)));

inline V8 splat(float x) { return V8{x, x, x, x, x, x, x, x}; }
inline V8 vmax(V8 a, V8 b) { return a < b ? b : a; }
inline V8 vmin(V8 a, V8 b) { return b < a ? b : a; }
inline V8 vclamp01(V8 v) { return vmin(vmax(v, splat(0.0f)), splat(1.0f)); }
// floor, exact for |x| < 2^31: truncate, then step down where that rounded up.
inline V8 vfloor(V8 x) {
  const V8 t = __builtin_convertvector(__builtin_convertvector(x, V8i), V8);
  return t > x ? t - splat(1.0f) : t;
}

// Eight pixels through torchvision's _rgb2hsv, the hue shift (mod 1) and _hsv2rgb.
inline void shift_hue8(V8& r, V8& g, V8& b, float shift) {
  const V8 one = splat(1.0f);
  const V8 maxc = vmax(r, vmax(g, b));
  const V8 minc = vmin(r, vmin(g, b));
  const V8i flat = maxc == minc;
  const V8 cr = maxc - minc;
  const V8 s = cr / (flat ? one : maxc);
  const V8 d = flat ? one : cr;
  const V8 rc = (maxc - r) / d, gc = (maxc - g) / d, bc = (maxc - b) / d;
  V8 h = maxc == r ? bc - gc : maxc == g ? splat(2.0f) + rc - bc : splat(4.0f) + gc - rc;
  h = h / splat(6.0f) + one;  // in [5/6, 11/6]: torchvision's fmod(h, 1) is h - floor(h), exactly
  h -= vfloor(h);
  h += splat(shift);
  h -= vfloor(h);  // Python's h % 1.0; may round up to 1.0, which acts as 0 below
  const V8 v = maxc;
  const V8 h6 = h * splat(6.0f);
  const V8 sector = vfloor(h6);
  const V8 f = h6 - sector;
  const V8 p = vclamp01(v * (one - s));
  const V8 q = vclamp01(v * (one - s * f));
  const V8 t = vclamp01(v * (one - s * (one - f)));
  const V8 k = sector >= splat(6.0f) ? splat(0.0f) : sector;
  const V8i k0 = k == splat(0.0f), k1 = k == splat(1.0f), k2 = k == splat(2.0f), k3 = k == splat(3.0f),
            k4 = k == splat(4.0f), k5 = k == splat(5.0f);
  // sectors 0..5: (v,t,p) (q,v,p) (p,v,t) (p,q,v) (t,p,v) (v,p,q)
  r = (k0 | k5) ? v : k1 ? q : k4 ? t : p;
  g = k0 ? t : (k1 | k2) ? v : k3 ? q : p;
  b = (k0 | k1) ? p : k2 ? t : k5 ? q : v;
}

}  // namespace

ColorDraw draw_color_augment(const ColorAugmentParams& p, Generator& g) {
  ColorDraw d;
  if (p.jitter_prob > 0 && g.uniform() < p.jitter_prob) {
    std::array<ColorOp, 4> order{ColorOp::brightness, ColorOp::contrast, ColorOp::saturation, ColorOp::hue};
    for (int i = 3; i > 0; --i) std::swap(order[i], order[g.below(static_cast<uint64_t>(i) + 1)]);
    // Factors in a fixed order (brightness, contrast, saturation, hue), then applied in `order`.
    std::array<float, 4> factor{};
    std::array<bool, 4> used{p.brightness > 0, p.contrast > 0, p.saturation > 0, p.hue > 0};
    const double spread[3] = {p.brightness, p.contrast, p.saturation};
    for (int k = 0; k < 3; ++k)
      if (used[k]) factor[k] = uniform_in(g, std::max(0.0, 1.0 - spread[k]), 1.0 + spread[k]);
    if (used[3]) factor[3] = uniform_in(g, -p.hue, p.hue);
    for (ColorOp op : order) {
      const int k = static_cast<int>(op);
      if (!used[k]) continue;
      d.ops[d.count] = op;
      d.factors[d.count] = factor[k];
      ++d.count;
    }
  }
  if (p.gray_prob > 0) d.gray = g.uniform() < p.gray_prob;
  return d;
}

void adjust_brightness(float* planes, size_t n, float factor) { blend(planes, n, factor, nullptr, 0.0f); }

void adjust_contrast(float* planes, size_t n, float factor) {
  const float *r = planes, *g = planes + n, *b = planes + 2 * n;
  // The mean of the grey image: eight float lanes over blocks of 512 pixels, each block's
  // total added in double (a plain double sum does not vectorise).
  double sum = 0;
  size_t i = 0;
  while (i + 8 <= n) {
    V8 acc = splat(0.0f);
    for (const size_t end = std::min(n, i + 512); i + 8 <= end; i += 8) {
      V8 vr, vg, vb;
      std::memcpy(&vr, r + i, sizeof(V8));
      std::memcpy(&vg, g + i, sizeof(V8));
      std::memcpy(&vb, b + i, sizeof(V8));
      acc += splat(0.2989f) * vr + splat(0.587f) * vg + splat(0.114f) * vb;
    }
    for (int l = 0; l < 8; ++l) sum += acc[l];
  }
  for (; i < n; ++i) sum += gray_of(r[i], g[i], b[i]);
  const float mean = n ? static_cast<float>(sum / static_cast<double>(n)) : 0.0f;
  blend(planes, n, factor, nullptr, mean);
}

void adjust_saturation(float* planes, size_t n, float factor) {
  thread_local std::vector<float> gray;
  gray.resize(n);
  const float *r = planes, *g = planes + n, *b = planes + 2 * n;
  for (size_t i = 0; i < n; ++i) gray[i] = gray_of(r[i], g[i], b[i]);
  blend(planes, n, factor, gray.data(), 0.0f);
}

void adjust_hue(float* planes, size_t n, float shift) {
  float *rp = planes, *gp = planes + n, *bp = planes + 2 * n;
  V8 r, g, b;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::memcpy(&r, rp + i, sizeof(V8));
    std::memcpy(&g, gp + i, sizeof(V8));
    std::memcpy(&b, bp + i, sizeof(V8));
    shift_hue8(r, g, b, shift);
    std::memcpy(rp + i, &r, sizeof(V8));
    std::memcpy(gp + i, &g, sizeof(V8));
    std::memcpy(bp + i, &b, sizeof(V8));
  }
  if (i == n) return;
  const size_t m = n - i;  // the last pixels, in lanes 0..m-1 (the others are black, unused)
  r = g = b = splat(0.0f);
  std::memcpy(&r, rp + i, m * sizeof(float));
  std::memcpy(&g, gp + i, m * sizeof(float));
  std::memcpy(&b, bp + i, m * sizeof(float));
  shift_hue8(r, g, b, shift);
  std::memcpy(rp + i, &r, m * sizeof(float));
  std::memcpy(gp + i, &g, m * sizeof(float));
  std::memcpy(bp + i, &b, m * sizeof(float));
}

void to_grayscale(float* planes, size_t n) {
  float *r = planes, *g = planes + n, *b = planes + 2 * n;
  for (size_t i = 0; i < n; ++i) r[i] = g[i] = b[i] = gray_of(r[i], g[i], b[i]);
}

void apply_color_draw(const ColorDraw& d, float* planes, size_t n) {
  for (int i = 0; i < d.count; ++i) {
    const float f = d.factors[static_cast<size_t>(i)];
    switch (d.ops[static_cast<size_t>(i)]) {
      case ColorOp::brightness: adjust_brightness(planes, n, f); break;
      case ColorOp::contrast: adjust_contrast(planes, n, f); break;
      case ColorOp::saturation: adjust_saturation(planes, n, f); break;
      case ColorOp::hue: adjust_hue(planes, n, f); break;
    }
  }
  if (d.gray) to_grayscale(planes, n);
}

}  // namespace coca
