#pragma once
// Image decoding for the shard writer: JPEG (libjpeg-turbo), PNG (libpng) and still WebP
// (libwebp, lossy and lossless) from memory to 8-bit RGB. Grey is expanded to RGB, an alpha
// channel is composited on white (in sRGB, as PIL's Image.alpha_composite on a white
// background), CMYK JPEGs are converted, 16-bit PNGs keep the high byte of each sample (as
// PIL's conversion to 8 bits). Animated WebP is refused. Also PNG, JPEG and WebP encoders,
// used by tests and fixtures.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "coca/tensor/error.h"

namespace coca {

// An 8-bit RGB image, rows top to bottom, pixels interleaved: [height, width, 3].
struct Image {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> rgb;
  const uint8_t* pixel(int x, int y) const { return rgb.data() + (static_cast<size_t>(y) * width + x) * 3; }
};

enum class ImageFormat { unknown, jpeg, png, gif, webp, bmp, tiff };
ImageFormat sniff_image_format(const uint8_t* data, size_t size);
const char* image_format_name(ImageFormat f);

// Why an image could not be decoded; the names are the skip reasons coca-shard reports.
enum class ImageFault { empty_file, not_an_image, unsupported_format, truncated, corrupt, too_large, animated };
const char* image_fault_name(ImageFault f);

class ImageDecodeError : public Error {
 public:
  ImageDecodeError(ImageFault fault, const std::string& what) : Error(what), fault_(fault) {}
  ImageFault fault() const { return fault_; }

 private:
  ImageFault fault_;
};

// Images above this many pixels are refused as too_large (a decompression-bomb guard).
constexpr int64_t kMaxImagePixels = int64_t{1} << 28;

// Size and coding of a PNG or WebP file from its header, without decoding the pixels:
// lossless for PNG and for lossless (VP8L) WebP, not for lossy or mixed WebP. Throws
// ImageDecodeError when the header cannot be read or the bytes are neither format.
struct PngWebpHeader {
  int width = 0, height = 0;
  bool lossless = false;
};
PngWebpHeader png_webp_header(const uint8_t* data, size_t size);

// Throws ImageDecodeError.
Image decode_image(const uint8_t* data, size_t size);
Image decode_image(const std::vector<uint8_t>& bytes);

// RGBA (or grey+alpha) with straight alpha composited on white: out = c*a + 255*(1-a).
inline uint8_t composite_on_white(uint8_t c, uint8_t a) {
  return static_cast<uint8_t>((static_cast<unsigned>(c) * a + 255u * (255u - a) + 127u) / 255u);
}

// Encoders. channels: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA; pixels interleaved row-major.
std::vector<uint8_t> encode_png(const uint8_t* pixels, int width, int height, int channels);
std::vector<uint8_t> encode_jpeg(const uint8_t* pixels, int width, int height, int channels, int quality = 90);
// channels 3 (RGB) or 4 (RGBA); quality < 0: lossless.
std::vector<uint8_t> encode_webp(const uint8_t* pixels, int width, int height, int channels, int quality = 90);

}  // namespace coca
