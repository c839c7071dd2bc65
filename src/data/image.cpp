#include "coca/data/image.h"

#include <csetjmp>
#include <cstdio>
#include <cstring>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

namespace coca {

ImageFormat sniff_image_format(const uint8_t* d, size_t n) {
  if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return ImageFormat::jpeg;
  if (n >= 8 && std::memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0) return ImageFormat::png;
  if (n >= 6 && (std::memcmp(d, "GIF87a", 6) == 0 || std::memcmp(d, "GIF89a", 6) == 0)) return ImageFormat::gif;
  if (n >= 12 && std::memcmp(d, "RIFF", 4) == 0 && std::memcmp(d + 8, "WEBP", 4) == 0) return ImageFormat::webp;
  if (n >= 2 && d[0] == 'B' && d[1] == 'M') return ImageFormat::bmp;
  if (n >= 4 && (std::memcmp(d, "II*\0", 4) == 0 || std::memcmp(d, "MM\0*", 4) == 0)) return ImageFormat::tiff;
  return ImageFormat::unknown;
}

const char* image_format_name(ImageFormat f) {
  switch (f) {
    case ImageFormat::jpeg: return "jpeg";
    case ImageFormat::png: return "png";
    case ImageFormat::gif: return "gif";
    case ImageFormat::webp: return "webp";
    case ImageFormat::bmp: return "bmp";
    case ImageFormat::tiff: return "tiff";
    default: return "unknown";
  }
}

const char* image_fault_name(ImageFault f) {
  switch (f) {
    case ImageFault::empty_file: return "empty_file";
    case ImageFault::not_an_image: return "not_an_image";
    case ImageFault::unsupported_format: return "unsupported_image_format";
    case ImageFault::truncated: return "truncated_image";
    case ImageFault::corrupt: return "corrupt_image";
    case ImageFault::too_large: return "image_too_large";
  }
  return "unknown";
}

namespace {

struct JpegErrorManager {
  jpeg_error_mgr pub;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  bool premature_end;
};

void jpeg_on_error(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

void jpeg_on_message(j_common_ptr cinfo, int level) {
  auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  // A warning for missing data means the file was cut short: libjpeg would pad the rest
  // with grey, which we refuse to train on.
  if (level == -1 && cinfo->err->msg_code == JWRN_JPEG_EOF) err->premature_end = true;
}

// Decodes into `out` (already declared by the caller so that longjmp skips no destructor).
// Returns an empty string on success, else the failure message.
std::string decode_jpeg_into(const uint8_t* data, size_t size, Image& out, bool& truncated) {
  jpeg_decompress_struct cinfo;
  JpegErrorManager err;
  std::memset(&err, 0, sizeof(err));
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = jpeg_on_error;
  err.pub.emit_message = jpeg_on_message;
  std::vector<uint8_t> row;  // declared before setjmp: longjmp must not skip its construction
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    truncated = err.premature_end;
    return err.message[0] ? err.message : "libjpeg error";
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  const bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
  cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
  if (static_cast<int64_t>(cinfo.image_width) * cinfo.image_height > kMaxImagePixels) {
    jpeg_destroy_decompress(&cinfo);
    return "too_large";
  }
  jpeg_start_decompress(&cinfo);
  const int w = static_cast<int>(cinfo.output_width), h = static_cast<int>(cinfo.output_height);
  const int comps = cinfo.output_components;
  out.width = w;
  out.height = h;
  out.rgb.resize(static_cast<size_t>(w) * h * 3);
  row.resize(static_cast<size_t>(w) * comps);
  const bool inverted = cmyk && cinfo.saw_Adobe_marker;
  while (cinfo.output_scanline < cinfo.output_height) {
    const int y = static_cast<int>(cinfo.output_scanline);
    JSAMPROW rows[1] = {row.data()};
    jpeg_read_scanlines(&cinfo, rows, 1);
    uint8_t* dst = out.rgb.data() + static_cast<size_t>(y) * w * 3;
    if (comps == 3) {
      std::memcpy(dst, row.data(), static_cast<size_t>(w) * 3);
    } else if (comps == 4) {
      for (int x = 0; x < w; ++x) {
        unsigned c = row[x * 4], m = row[x * 4 + 1], yy = row[x * 4 + 2], k = row[x * 4 + 3];
        if (!inverted) { c = 255 - c; m = 255 - m; yy = 255 - yy; k = 255 - k; }
        dst[x * 3] = static_cast<uint8_t>((c * k + 127) / 255);
        dst[x * 3 + 1] = static_cast<uint8_t>((m * k + 127) / 255);
        dst[x * 3 + 2] = static_cast<uint8_t>((yy * k + 127) / 255);
      }
    } else {
      for (int x = 0; x < w; ++x) dst[x * 3] = dst[x * 3 + 1] = dst[x * 3 + 2] = row[x];
    }
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  truncated = err.premature_end;
  return truncated ? "premature end of JPEG data" : "";
}

Image decode_png(const uint8_t* data, size_t size) {
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&image, data, size)) {
    const std::string msg = image.message;
    png_image_free(&image);
    const bool cut = msg.find("EOF") != std::string::npos || msg.find("end") != std::string::npos ||
                     msg.find("Read Error") != std::string::npos;
    throw ImageDecodeError(cut ? ImageFault::truncated : ImageFault::corrupt, "png: " + msg);
  }
  if (static_cast<int64_t>(image.width) * image.height > kMaxImagePixels) {
    png_image_free(&image);
    throw ImageDecodeError(ImageFault::too_large, str_cat("png: ", image.width, "x", image.height, " is too large"));
  }
  image.format = PNG_FORMAT_RGBA;
  std::vector<uint8_t> rgba(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, nullptr, rgba.data(), 0, nullptr)) {
    const std::string msg = image.message;
    png_image_free(&image);
    const bool cut = msg.find("EOF") != std::string::npos || msg.find("Read Error") != std::string::npos ||
                     msg.find("Not enough") != std::string::npos || msg.find("end") != std::string::npos;
    throw ImageDecodeError(cut ? ImageFault::truncated : ImageFault::corrupt, "png: " + msg);
  }
  Image out;
  out.width = static_cast<int>(image.width);
  out.height = static_cast<int>(image.height);
  const size_t n = static_cast<size_t>(out.width) * out.height;
  out.rgb.resize(n * 3);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t a = rgba[i * 4 + 3];
    for (int c = 0; c < 3; ++c) out.rgb[i * 3 + c] = composite_on_white(rgba[i * 4 + c], a);
  }
  png_image_free(&image);
  return out;
}

}  // namespace

Image decode_image(const uint8_t* data, size_t size) {
  if (size == 0) throw ImageDecodeError(ImageFault::empty_file, "zero-byte file");
  const ImageFormat fmt = sniff_image_format(data, size);
  if (fmt == ImageFormat::png) return decode_png(data, size);
  if (fmt == ImageFormat::jpeg) {
    Image out;
    bool truncated = false;
    const std::string msg = decode_jpeg_into(data, size, out, truncated);
    if (msg == "too_large") throw ImageDecodeError(ImageFault::too_large, "jpeg: image too large");
    if (!msg.empty()) {
      const bool cut = truncated || msg.find("end of file") != std::string::npos ||
                       msg.find("Premature end") != std::string::npos;
      throw ImageDecodeError(cut ? ImageFault::truncated : ImageFault::corrupt, "jpeg: " + msg);
    }
    if (out.width <= 0 || out.height <= 0) throw ImageDecodeError(ImageFault::corrupt, "jpeg: empty image");
    return out;
  }
  if (fmt == ImageFormat::unknown) throw ImageDecodeError(ImageFault::not_an_image, "not a JPEG or PNG file");
  throw ImageDecodeError(ImageFault::unsupported_format,
                         str_cat(image_format_name(fmt), " images are not supported (JPEG and PNG only)"));
}

Image decode_image(const std::vector<uint8_t>& bytes) { return decode_image(bytes.data(), bytes.size()); }

std::vector<uint8_t> encode_png(const uint8_t* pixels, int width, int height, int channels) {
  COCA_CHECK(channels >= 1 && channels <= 4, "encode_png: channels must be 1..4, got ", channels);
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(width);
  image.height = static_cast<png_uint_32>(height);
  static const png_uint_32 formats[] = {PNG_FORMAT_GRAY, PNG_FORMAT_GA, PNG_FORMAT_RGB, PNG_FORMAT_RGBA};
  image.format = formats[channels - 1];
  png_alloc_size_t size = 0;
  COCA_CHECK(png_image_write_to_memory(&image, nullptr, &size, 0, pixels, 0, nullptr),
             "encode_png: ", image.message);
  std::vector<uint8_t> out(size);
  COCA_CHECK(png_image_write_to_memory(&image, out.data(), &size, 0, pixels, 0, nullptr),
             "encode_png: ", image.message);
  out.resize(size);
  return out;
}

std::vector<uint8_t> encode_jpeg(const uint8_t* pixels, int width, int height, int channels, int quality) {
  COCA_CHECK(channels == 1 || channels == 3 || channels == 4, "encode_jpeg: channels must be 1, 3 or 4 (CMYK)");
  jpeg_compress_struct cinfo;
  jpeg_error_mgr jerr;
  cinfo.err = jpeg_std_error(&jerr);  // encoding our own buffers cannot fail except on OOM
  jpeg_create_compress(&cinfo);
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&cinfo, &buf, &size);
  cinfo.image_width = static_cast<JDIMENSION>(width);
  cinfo.image_height = static_cast<JDIMENSION>(height);
  cinfo.input_components = channels;
  cinfo.in_color_space = channels == 1 ? JCS_GRAYSCALE : channels == 3 ? JCS_RGB : JCS_CMYK;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, quality, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(pixels) + static_cast<size_t>(cinfo.next_scanline) * width * channels;
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  std::vector<uint8_t> out(buf, buf + size);
  jpeg_destroy_compress(&cinfo);
  std::free(buf);
  return out;
}

}  // namespace coca
