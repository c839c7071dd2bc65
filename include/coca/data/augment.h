#pragma once
// Per-sample image transforms for the loader: random-resized-crop as torchvision's
// RandomResizedCrop.get_params draws it (10 tries, then a centred fallback), resampled to
// H x H, optionally colour jitter and grayscale (color_jitter.h), and normalised with CLIP's
// mean/std into float planes [3, H, H]. Without augmentation: the whole (already
// centre-cropped) shard image resized to H, or copied when the sizes match.
#include <array>

#include "coca/data/color_jitter.h"
#include "coca/data/resample.h"
#include "coca/tensor/random.h"

namespace coca {

struct AugmentParams {
  bool random_crop = true;
  double scale_min = 0.9, scale_max = 1.0;
  double ratio_min = 3.0 / 4.0, ratio_max = 4.0 / 3.0;
  ResampleFilter filter = ResampleFilter::bicubic;
  // Normalisation (v / 255 - mean) / std; CLIP's constants by default.
  std::array<float, 3> mean{0.48145466f, 0.4578275f, 0.40821073f};
  std::array<float, 3> std{0.26862954f, 0.26130258f, 0.27577711f};
  // After the crop, before normalisation; off by default.
  ColorAugmentParams color;
};

struct CropBox {
  int x = 0, y = 0, w = 0, h = 0;
};

// torchvision's RandomResizedCrop.get_params on a width x height image.
CropBox random_resized_crop_box(int width, int height, const AugmentParams& p, Generator& g);

// How a transform writes its resampled pixels into `out`: normalised directly (no colour
// augmentation drawn for this sample: the fast path), or as [0, 1] values that
// finish_color_sample then jitters and normalises.
struct PixelTarget {
  const float* mean;
  const float* std;
};
PixelTarget pixel_target(const AugmentParams& p, const ColorDraw& d);
// out: [3, n] in [0, 1] -> the colour augmentation of `d`, then normalised with p.mean/p.std.
// Nothing to do when !d.any().
void finish_color_sample(const AugmentParams& p, const ColorDraw& d, size_t n, float* out);

// out: [3, out_size, out_size] float32, normalised. Draws the crop box, then the colour
// augmentation (draw_color_augment), from `g`.
void transform_sample(const RgbView& src, int out_size, const AugmentParams& p, Generator& g, float* out);

}  // namespace coca
