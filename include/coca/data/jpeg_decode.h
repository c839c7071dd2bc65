#pragma once
// JPEG decoding for the loader through libjpeg-turbo's TurboJPEG API, with DCT-domain
// downscaling: a JPEG decoded at 1/2, 1/4 or 1/8 costs a fraction of a full decode, so the
// loader picks the smallest of those scales at which the crop it is about to take still has
// at least the output's pixels on both axes, and resamples from there. (libjpeg-turbo's
// other eighths, 3/8 to 7/8, have no SIMD code: 5/8 to 7/8 decode slower than 1/1.) The crop box is always drawn on the full-size image, so the choice
// of scale never changes which part of the image a sample shows.
#include <cstddef>
#include <cstdint>

#include "coca/data/augment.h"
#include "coca/data/image.h"

namespace coca {

// A scaling factor num/denom, as tjGetScalingFactors lists them.
struct DctScale {
  int num = 1, denom = 1;
  bool operator==(const DctScale& o) const { return num == o.num && denom == o.denom; }
};
// The size libjpeg-turbo gives `dim` at `s` (TJSCALED: ceil(dim * num / denom)).
int dct_scaled(int dim, DctScale s);
// The smallest of 1/2, 1/4, 1/8 at which a crop of crop_w x crop_h full-size pixels still
// spans at least out_w x out_h pixels: crop_w * s >= out_w and crop_h * s >= out_h. 1/1 when
// none qualifies (crops under twice the output, upscaling crops).
DctScale choose_dct_scale(double crop_w, double crop_h, int out_w, int out_h);

struct JpegInfo {
  int width = 0, height = 0;
  bool cmyk = false;  // CMYK or YCCK colour space
};
// Reads the header; throws ImageDecodeError (corrupt / not_an_image) when it cannot.
JpegInfo jpeg_info(const uint8_t* data, size_t size);
// Decodes to RGB at scale `s`; a warning from libjpeg-turbo (truncated or damaged data,
// which it would otherwise fill in with grey) is an error too. Throws ImageDecodeError.
// fast: libjpeg-turbo's faster IDCT and chroma upsampling (TJFLAG_FASTDCT,
// TJFLAG_FASTUPSAMPLE); a level or two of difference per pixel, used for training crops only.
Image decode_jpeg_scaled(const uint8_t* data, size_t size, DctScale s = {}, bool fast = false);

// The loader's per-sample image transform on an encoded image (any format decode_image
// reads; JPEG decoded with DCT scaling): random-resized-crop on the whole image when
// p.random_crop, else OpenCLIP's eval transform (shorter side resized to out_size, centre
// crop), then p.color's colour augmentation, written normalised into out [3, out_size,
// out_size]. Draws from `g` exactly as transform_sample does (the crop, then the colour), so
// the output depends only on the bytes and `g`.
// Training crops (p.random_crop) decode with the fast IDCT and upsampling (see
// decode_jpeg_scaled); the eval transform decodes exactly.
void transform_encoded(const uint8_t* data, size_t size, int out_size, const AugmentParams& p, Generator& g,
                       float* out);

}  // namespace coca
