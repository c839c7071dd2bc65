#pragma once
// Per-sample image transforms for the loader: random-resized-crop as torchvision's
// RandomResizedCrop.get_params draws it (10 tries, then a centred fallback), resampled to
// H x H and normalised with CLIP's mean/std into float planes [3, H, H]. Without
// augmentation: the whole (already centre-cropped) shard image resized to H, or copied when
// the sizes match.
#include <array>

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
};

struct CropBox {
  int x = 0, y = 0, w = 0, h = 0;
};

// torchvision's RandomResizedCrop.get_params on a width x height image.
CropBox random_resized_crop_box(int width, int height, const AugmentParams& p, Generator& g);

// out: [3, out_size, out_size] float32, normalised.
void transform_sample(const RgbView& src, int out_size, const AugmentParams& p, Generator& g, float* out);

}  // namespace coca
