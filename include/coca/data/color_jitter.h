#pragma once
// OpenCLIP's colour augmentations for training images (its --aug-cfg keys color_jitter,
// color_jitter_prob and gray_scale_prob): with probability jitter_prob torchvision's
// ColorJitter, then with probability gray_prob RandomGrayscale to three equal channels.
//
// The adjustments follow torchvision's tensor ops on a float image in [0, 1], computed in
// float32, each clamped to [0, 1]:
//   brightness  x * f
//   contrast    f * x + (1 - f) * mean(gray)      gray = 0.2989 R + 0.587 G + 0.114 B
//   saturation  f * x + (1 - f) * gray
//   hue         h + shift (mod 1) in HSV, with torchvision's RGB <-> HSV formulas
// ColorJitter applies the four in a random order, a fresh permutation per sample.
// Images are planar: R, G, B planes of n floats each.
#include <array>
#include <cstddef>
#include <cstdint>

#include "coca/tensor/random.h"

namespace coca {

// The settings, as ColorJitter(brightness=B, contrast=C, saturation=S, hue=H): factors drawn
// uniformly from [max(0, 1 - B), 1 + B] (likewise C, S), the hue shift from [-H, H]. An
// adjustment whose range is a single neutral point (B = 0, ..., H = 0) is left out, as
// ColorJitter leaves it out.
struct ColorAugmentParams {
  double brightness = 0, contrast = 0, saturation = 0, hue = 0;  // B, C, S >= 0; 0 <= H <= 0.5
  double jitter_prob = 0;  // probability of ColorJitter per sample
  double gray_prob = 0;    // probability of RandomGrayscale per sample
};

enum class ColorOp : uint8_t { brightness, contrast, saturation, hue };

// One sample's colour augmentation: the adjustments to apply in order, then grayscale or not.
struct ColorDraw {
  int count = 0;
  std::array<ColorOp, 4> ops{};
  std::array<float, 4> factors{};  // factor (hue: shift) of ops[i]
  bool gray = false;
  bool any() const { return count > 0 || gray; }
};

// Draws from `g`: when jitter_prob > 0, one uniform for the coin and, on heads, a permutation
// and one factor per adjustment in use; then, when gray_prob > 0, one uniform for the
// grayscale coin. Nothing at all when both probabilities are 0.
ColorDraw draw_color_augment(const ColorAugmentParams& p, Generator& g);

// planes: [3, n], values in [0, 1]; results clamped to [0, 1].
void adjust_brightness(float* planes, size_t n, float factor);
void adjust_contrast(float* planes, size_t n, float factor);
void adjust_saturation(float* planes, size_t n, float factor);
// shift in [-0.5, 0.5] of a full turn.
void adjust_hue(float* planes, size_t n, float shift);
// Each channel becomes 0.2989 R + 0.587 G + 0.114 B.
void to_grayscale(float* planes, size_t n);
void apply_color_draw(const ColorDraw& d, float* planes, size_t n);

}  // namespace coca
