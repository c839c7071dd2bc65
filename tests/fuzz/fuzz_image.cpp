// Image decoding: decode_image (JPEG, PNG, WebP), the header readers the loader checks format 2
// shards with (jpeg_info, png_webp_header: their size must be the decoded size, or the loader's
// header-vs-image_sizes check would pass damaged rows or fail good ones), JPEG decoding at DCT
// scales, and the loader's whole transform of encoded bytes (transform_encoded).
#include <algorithm>

#include "coca/data/jpeg_decode.h"
#include "fuzz_common.h"

using namespace coca;

namespace {

// Decoders accept up to kMaxImagePixels (2^28, gigabytes of RGB) by design; the harness decodes
// only what its 2 GB RSS limit and 10 s timeout allow.
constexpr int64_t kHarnessMaxPixels = int64_t{1} << 22;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const uint8_t knobs = size ? data[size - 1] : 0;
  const ImageFormat format = sniff_image_format(data, size);
  int hw = 0, hh = 0;
  bool header = false;
  if (format == ImageFormat::jpeg) {
    header = fuzz::expect_errors([&] {
      const JpegInfo info = jpeg_info(data, size);
      hw = info.width, hh = info.height;
    });
  } else if (format == ImageFormat::png || format == ImageFormat::webp) {
    header = fuzz::expect_errors([&] {
      const PngWebpHeader info = png_webp_header(data, size);
      hw = info.width, hh = info.height;
    });
  }
  if (header) FUZZ_ASSERT(hw > 0 && hh > 0);
  const bool known = format == ImageFormat::jpeg || format == ImageFormat::png || format == ImageFormat::webp;
  if (known && (!header || static_cast<int64_t>(hw) * hh > kHarnessMaxPixels)) return 0;

  fuzz::expect_errors([&] {
    const Image img = decode_image(data, size);
    FUZZ_ASSERT(img.width > 0 && img.height > 0);
    FUZZ_ASSERT(img.rgb.size() == static_cast<size_t>(img.width) * img.height * 3);
    FUZZ_ASSERT(img.width == hw && img.height == hh);
  });
  if (format == ImageFormat::jpeg) {
    const DctScale scale = (knobs & 1) ? DctScale{1, 8} : DctScale{1, 1};
    fuzz::expect_errors([&] {
      const Image img = decode_jpeg_scaled(data, size, scale, knobs & 2);
      FUZZ_ASSERT(img.width == dct_scaled(hw, scale) && img.height == dct_scaled(hh, scale));
      FUZZ_ASSERT(img.rgb.size() == static_cast<size_t>(img.width) * img.height * 3);
    });
  }
  AugmentParams p;
  p.random_crop = knobs & 4;
  p.scale_min = 0.08;
  if (knobs & 8) p.color = {0.4, 0.4, 0.4, 0.1, 1.0, 0.2};
  Generator g(knobs);
  const int out_size = 8 + (knobs >> 4);
  std::vector<float> out(3 * static_cast<size_t>(out_size) * out_size);
  fuzz::expect_errors([&] { transform_encoded(data, size, out_size, p, g, out.data()); });
  return 0;
}
