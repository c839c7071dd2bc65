#include "coca/data/augment.h"

#include <algorithm>
#include <cmath>

#include "coca/data/loader.h"

namespace coca {

CropBox random_resized_crop_box(int width, int height, const AugmentParams& p, Generator& g) {
  const double area = static_cast<double>(width) * height;
  const double log_r0 = std::log(p.ratio_min), log_r1 = std::log(p.ratio_max);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target = area * (p.scale_min + (p.scale_max - p.scale_min) * g.uniform());
    const double aspect = std::exp(log_r0 + (log_r1 - log_r0) * g.uniform());
    const int w = static_cast<int>(std::lround(std::sqrt(target * aspect)));
    const int h = static_cast<int>(std::lround(std::sqrt(target / aspect)));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const int y = static_cast<int>(g.below(static_cast<uint64_t>(height - h + 1)));
      const int x = static_cast<int>(g.below(static_cast<uint64_t>(width - w + 1)));
      return {x, y, w, h};
    }
  }
  const double in_ratio = static_cast<double>(width) / height;
  int w = width, h = height;
  if (in_ratio < p.ratio_min) h = static_cast<int>(std::lround(w / p.ratio_min));
  else if (in_ratio > p.ratio_max) w = static_cast<int>(std::lround(h * p.ratio_max));
  return {(width - w) / 2, (height - h) / 2, w, h};
}

PixelTarget pixel_target(const AugmentParams& p, const ColorDraw& d) {
  static constexpr float kZero[3] = {0.0f, 0.0f, 0.0f}, kOne[3] = {1.0f, 1.0f, 1.0f};
  // mean 0, std 1: (v / 255 - 0) / 1, the clamped pixel as a [0, 1] float.
  if (d.any()) return {kZero, kOne};
  return {p.mean.data(), p.std.data()};
}

void finish_color_sample(const AugmentParams& p, const ColorDraw& d, size_t n, float* out) {
  if (!d.any()) return;
  apply_color_draw(d, out, n);
  for (int c = 0; c < 3; ++c) {
    const float mean = p.mean[static_cast<size_t>(c)], sd = p.std[static_cast<size_t>(c)];
    float* x = out + static_cast<size_t>(c) * n;
    for (size_t i = 0; i < n; ++i) x[i] = (x[i] - mean) / sd;
  }
}

void transform_sample(const RgbView& src, int out_size, const AugmentParams& p, Generator& g, float* out) {
  const size_t n = static_cast<size_t>(out_size) * out_size;
  if (p.random_crop) {
    const CropBox b = random_resized_crop_box(src.width, src.height, p, g);
    const ColorDraw color = draw_color_augment(p.color, g);
    const PixelTarget t = pixel_target(p, color);
    if (b.w == out_size && b.h == out_size) {
      crop_rgb_normalized(src, b.x, b.y, b.w, b.h, t.mean, t.std, out);
    } else {
      const SourceBox box{static_cast<double>(b.x), static_cast<double>(b.y), static_cast<double>(b.w),
                          static_cast<double>(b.h)};
      resample_rgb_normalized(src, box, out_size, out_size, p.filter, t.mean, t.std, out);
    }
    finish_color_sample(p, color, n, out);
    return;
  }
  const ColorDraw color = draw_color_augment(p.color, g);
  const PixelTarget t = pixel_target(p, color);
  if (src.width == out_size && src.height == out_size) {
    crop_rgb_normalized(src, 0, 0, out_size, out_size, t.mean, t.std, out);
  } else {
    // Centre square, resized: the shard image is square already, so this is a plain resize.
    const double side = std::min(src.width, src.height);
    const SourceBox box{(src.width - side) / 2.0, (src.height - side) / 2.0, side, side};
    resample_rgb_normalized(src, box, out_size, out_size, p.filter, t.mean, t.std, out);
  }
  finish_color_sample(p, color, n, out);
}

}  // namespace coca
