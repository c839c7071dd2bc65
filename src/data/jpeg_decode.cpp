#include "coca/data/jpeg_decode.h"

#include <turbojpeg.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "coca/data/loader.h"

namespace coca {

namespace {

// One decompressor per thread, created on first use and destroyed with the thread.
class TjHandle {
 public:
  TjHandle() : h_(tjInitDecompress()) {}
  ~TjHandle() {
    if (h_) tjDestroy(h_);
  }
  TjHandle(const TjHandle&) = delete;
  TjHandle& operator=(const TjHandle&) = delete;
  tjhandle get() {
    if (!h_) throw Error(str_cat("TurboJPEG: cannot create a decompressor: ", tjGetErrorStr2(nullptr)));
    return h_;
  }
  // A handle that failed mid-decode can keep state that makes the next, valid, file fail
  // ("size 0x0"): replaced after every failure.
  void renew() {
    if (h_) tjDestroy(h_);
    h_ = tjInitDecompress();
  }

 private:
  tjhandle h_;
};

TjHandle& thread_handle() {
  thread_local TjHandle handle;
  return handle;
}

tjhandle decompressor() { return thread_handle().get(); }

[[noreturn]] void tj_failed(tjhandle h, const char* stage) {
  const std::string msg = tjGetErrorStr2(h);
  if (h == thread_handle().get()) thread_handle().renew();
  const bool truncated = msg.find("remature end") != std::string::npos || msg.find("truncated") != std::string::npos;
  throw ImageDecodeError(truncated ? ImageFault::truncated : ImageFault::corrupt,
                         str_cat("JPEG ", stage, ": ", msg));
}

}  // namespace

int dct_scaled(int dim, DctScale s) { return (dim * s.num + s.denom - 1) / s.denom; }

DctScale choose_dct_scale(double crop_w, double crop_h, int out_w, int out_h) {
  DctScale best{1, 1};
  for (const int denom : {2, 4, 8}) {
    if (crop_w < static_cast<double>(out_w) * denom || crop_h < static_cast<double>(out_h) * denom) break;
    best = {1, denom};
  }
  return best;
}

JpegInfo jpeg_info(const uint8_t* data, size_t size) {
  if (size == 0) throw ImageDecodeError(ImageFault::empty_file, "JPEG header: no bytes");
  tjhandle h = decompressor();
  int w = 0, ht = 0, subsamp = 0, colorspace = 0;
  if (tjDecompressHeader3(h, data, static_cast<unsigned long>(size), &w, &ht, &subsamp, &colorspace) != 0)
    tj_failed(h, "header");
  if (w <= 0 || ht <= 0) throw ImageDecodeError(ImageFault::corrupt, str_cat("JPEG header: size ", w, "x", ht));
  if (static_cast<int64_t>(w) * ht > kMaxImagePixels)
    throw ImageDecodeError(ImageFault::too_large, str_cat("JPEG of ", w, "x", ht, " pixels is too large"));
  return {w, ht, colorspace == TJCS_CMYK || colorspace == TJCS_YCCK};
}

namespace {

// Decodes into `out`, reusing its buffer (the loader's workers keep one per thread: a fresh
// 200 KB buffer per sample costs page faults comparable to the decode).
// `header`: jpeg_info of the same bytes when the caller has it already.
void decode_jpeg_into(const uint8_t* data, size_t size, DctScale s, bool fast, Image& out,
                      const JpegInfo* header = nullptr) {
  const JpegInfo info = header ? *header : jpeg_info(data, size);
  if (info.cmyk) {  // TurboJPEG cannot give RGB from CMYK; decode_image converts it
    Image full = decode_image(data, size);
    if (s == DctScale{}) {
      out = std::move(full);
      return;
    }
    out.width = dct_scaled(full.width, s);
    out.height = dct_scaled(full.height, s);
    out.rgb.resize(static_cast<size_t>(out.width) * out.height * 3);
    const RgbView v{full.rgb.data(), full.width, full.height, static_cast<int64_t>(full.width) * 3};
    resample_rgb_u8(v, {0, 0, static_cast<double>(full.width), static_cast<double>(full.height)}, out.width,
                    out.height, ResampleFilter::bilinear, out.rgb.data());
    return;
  }
  out.width = dct_scaled(info.width, s);
  out.height = dct_scaled(info.height, s);
  out.rgb.resize(static_cast<size_t>(out.width) * out.height * 3);
  tjhandle h = decompressor();
  if (tjDecompress2(h, data, static_cast<unsigned long>(size), out.rgb.data(), out.width, out.width * 3, out.height,
                    TJPF_RGB, TJFLAG_STOPONWARNING | (fast ? TJFLAG_FASTDCT | TJFLAG_FASTUPSAMPLE : 0)) != 0)
    tj_failed(h, "decode");
}

}  // namespace

Image decode_jpeg_scaled(const uint8_t* data, size_t size, DctScale s, bool fast) {
  Image out;
  decode_jpeg_into(data, size, s, fast, out);
  return out;
}

void transform_encoded(const uint8_t* data, size_t size, int out_size, const AugmentParams& p, Generator& g,
                       float* out) {
  const bool jpeg = sniff_image_format(data, size) == ImageFormat::jpeg;
  int width = 0, height = 0;
  thread_local Image decoded;
  JpegInfo info;
  if (jpeg) {
    info = jpeg_info(data, size);
    width = info.width;
    height = info.height;
  } else {
    decoded = decode_image(data, size);
    width = decoded.width;
    height = decoded.height;
  }
  // The crop on the full-size image: random-resized-crop, or the eval transform's centred
  // square of the shorter side (resize shorter side to out_size, then centre crop).
  double bx, by, bw, bh;
  if (p.random_crop) {
    const CropBox b = random_resized_crop_box(width, height, p, g);
    bx = b.x, by = b.y, bw = b.w, bh = b.h;
  } else {
    const double side = std::min(width, height);
    bx = (width - side) / 2.0, by = (height - side) / 2.0, bw = bh = side;
  }
  const ColorDraw color = draw_color_augment(p.color, g);
  const PixelTarget target = pixel_target(p, color);
  if (jpeg) {
    const DctScale s = choose_dct_scale(bw, bh, out_size, out_size);
    decode_jpeg_into(data, size, s, p.random_crop, decoded, &info);
  }
  const double fx = static_cast<double>(decoded.width) / width, fy = static_cast<double>(decoded.height) / height;
  SourceBox box{bx * fx, by * fy, bw * fx, bh * fy};
  box.w = std::min(box.w, decoded.width - box.x0);
  box.h = std::min(box.h, decoded.height - box.y0);
  const RgbView view{decoded.rgb.data(), decoded.width, decoded.height, static_cast<int64_t>(decoded.width) * 3};
  if (fx == 1.0 && fy == 1.0 && bw == out_size && bh == out_size && bx == std::floor(bx) && by == std::floor(by))
    crop_rgb_normalized(view, static_cast<int>(bx), static_cast<int>(by), out_size, out_size, target.mean, target.std,
                        out);
  else
    resample_rgb_normalized(view, box, out_size, out_size, p.filter, target.mean, target.std, out);
  finish_color_sample(p, color, static_cast<size_t>(out_size) * out_size, out);
}

}  // namespace coca
