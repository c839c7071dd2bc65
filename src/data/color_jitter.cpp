#include "coca/data/color_jitter.h"

#include <algorithm>
#include <cmath>
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

// One pixel through torchvision's _rgb2hsv, the hue shift (mod 1) and _hsv2rgb.
inline void shift_hue(float& r, float& g, float& b, float shift) {
  const float maxc = std::max(r, std::max(g, b));
  const float minc = std::min(r, std::min(g, b));
  const bool flat = maxc == minc;
  const float cr = maxc - minc;
  const float s = cr / (flat ? 1.0f : maxc);
  const float d = flat ? 1.0f : cr;
  const float rc = (maxc - r) / d, gc = (maxc - g) / d, bc = (maxc - b) / d;
  float h;
  if (maxc == r) h = bc - gc;
  else if (maxc == g) h = 2.0f + rc - bc;
  else h = 4.0f + gc - rc;
  h = std::fmod(h / 6.0f + 1.0f, 1.0f);
  h += shift;
  h -= std::floor(h);  // Python's h % 1.0
  const float v = maxc;
  const float h6 = h * 6.0f;
  const float sector = std::floor(h6);
  const float f = h6 - sector;
  const float p = clamp01(v * (1.0f - s));
  const float q = clamp01(v * (1.0f - s * f));
  const float t = clamp01(v * (1.0f - s * (1.0f - f)));
  switch (static_cast<int>(sector) % 6) {
    case 0: r = v, g = t, b = p; break;
    case 1: r = q, g = v, b = p; break;
    case 2: r = p, g = v, b = t; break;
    case 3: r = p, g = q, b = v; break;
    case 4: r = t, g = p, b = v; break;
    default: r = v, g = p, b = q; break;
  }
}

float uniform_in(Generator& g, double lo, double hi) { return static_cast<float>(lo + (hi - lo) * g.uniform()); }

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
  double sum = 0;
  for (size_t i = 0; i < n; ++i) sum += gray_of(r[i], g[i], b[i]);
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
  float *r = planes, *g = planes + n, *b = planes + 2 * n;
  for (size_t i = 0; i < n; ++i) shift_hue(r[i], g[i], b[i], shift);
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
