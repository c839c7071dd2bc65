#pragma once
// Separable, antialiased resampling of 8-bit RGB in the manner of PIL's Image.resize with a
// box: each output pixel is a filter-weighted average of the source pixels under it, the
// filter widened by the downscale factor so that shrinking averages instead of aliasing.
// The shard writer uses it (bicubic) to resize the shorter side and centre-crop; the loader
// uses it for random-resized-crop and resizing, writing normalised float planes directly.
#include <cstdint>

#include "coca/data/image.h"

namespace coca {

enum class ResampleFilter { bilinear, bicubic, lanczos3 };
ResampleFilter parse_resample_filter(const std::string& name);

// A source rectangle in pixel units (may be fractional): [x0, x0 + w) x [y0, y0 + h).
struct SourceBox {
  double x0 = 0, y0 = 0, w = 0, h = 0;
};

// View of interleaved RGB pixels; `stride` in bytes between rows.
struct RgbView {
  const uint8_t* data = nullptr;
  int width = 0;
  int height = 0;
  int64_t stride = 0;
};

// box -> out [out_h, out_w, 3] uint8, rounded and clamped.
void resample_rgb_u8(const RgbView& src, const SourceBox& box, int out_w, int out_h, ResampleFilter filter,
                     uint8_t* out);
// box -> out [3, out_h, out_w] float32 with out[c] = (v / 255 - mean[c]) / std[c].
void resample_rgb_normalized(const RgbView& src, const SourceBox& box, int out_w, int out_h,
                             ResampleFilter filter, const float mean[3], const float std[3], float* out);
// Without resampling (out size == box size, integer box): crop + normalise, the fast path.
void crop_rgb_normalized(const RgbView& src, int x0, int y0, int w, int h, const float mean[3],
                         const float std[3], float* out);

// Resizes so that the shorter side is `size`, then takes the centred size x size square;
// done as one resample of the centred square of the source.
Image resize_shorter_center_crop(const Image& src, int size, ResampleFilter filter = ResampleFilter::bicubic);

}  // namespace coca
