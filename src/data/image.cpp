#include "coca/data/image.h"

#include <csetjmp>
#include <cstdio>
#include <cstring>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>
#include <webp/decode.h>
#include <webp/encode.h>

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
    case ImageFault::animated: return "webp_animation";
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

struct PngMemoryReader {
  const uint8_t* data;
  size_t size, pos;
};

void png_read_from_memory(png_structp png, png_bytep out, png_size_t n) {
  auto* r = static_cast<PngMemoryReader*>(png_get_io_ptr(png));
  if (n > r->size - r->pos) png_error(png, "Read Error: file ends early");
  std::memcpy(out, r->data + r->pos, n);
  r->pos += n;
}

void png_on_error(png_structp png, png_const_charp msg) {
  auto* message = static_cast<std::string*>(png_get_error_ptr(png));
  *message = msg;
  png_longjmp(png, 1);
}

void png_on_warning(png_structp, png_const_charp) {}

// 16 bits per sample: libpng's simplified reader takes such data as linear light and converts
// it to sRGB (0x8080 would become 186, not 128). PIL keeps the high byte of each sample, with
// no gamma conversion; so does this reader. Alpha is composited on white as for 8-bit files.
// Returns an empty string on success, else the failure message (libpng longjmps on errors,
// so `out` and `rgba` are owned by the caller).
std::string decode_png16_into(const uint8_t* data, size_t size, Image& out, std::vector<uint8_t>& rgba) {
  std::string message;
  PngMemoryReader reader{data, size, 0};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &message, png_on_error, png_on_warning);
  if (!png) return "png_create_read_struct failed";
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    return "png_create_info_struct failed";
  }
  std::vector<png_bytep> rows;
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    return message.empty() ? "libpng error" : message;
  }
  png_set_read_fn(png, &reader, png_read_from_memory);
  png_read_info(png, info);
  const png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  png_set_strip_16(png);  // keeps the high byte
  png_set_expand(png);    // tRNS to alpha
  png_set_gray_to_rgb(png);
  png_set_filler(png, 0xFF, PNG_FILLER_AFTER);  // RGB -> RGBA (opaque)
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  if (png_get_rowbytes(png, info) != static_cast<size_t>(w) * 4) png_error(png, "unexpected row layout");
  rgba.resize(static_cast<size_t>(w) * h * 4);
  rows.resize(h);
  for (png_uint_32 y = 0; y < h; ++y) rows[y] = rgba.data() + static_cast<size_t>(y) * w * 4;
  png_read_image(png, rows.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  out.width = static_cast<int>(w);
  out.height = static_cast<int>(h);
  return "";
}

Image rgba_on_white(const uint8_t* rgba, int width, int height) {
  Image out;
  out.width = width;
  out.height = height;
  const size_t n = static_cast<size_t>(width) * height;
  out.rgb.resize(n * 3);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t a = rgba[i * 4 + 3];
    for (int c = 0; c < 3; ++c) out.rgb[i * 3 + c] = composite_on_white(rgba[i * 4 + c], a);
  }
  return out;
}

Image decode_webp(const uint8_t* data, size_t size) {
  WebPDecoderConfig config;
  if (!WebPInitDecoderConfig(&config)) throw Error("webp: decoder library version mismatch");
  VP8StatusCode st = WebPGetFeatures(data, size, &config.input);
  auto fault_of = [](VP8StatusCode code) {
    return code == VP8_STATUS_NOT_ENOUGH_DATA ? ImageFault::truncated
           : code == VP8_STATUS_UNSUPPORTED_FEATURE ? ImageFault::unsupported_format
                                                     : ImageFault::corrupt;
  };
  if (st != VP8_STATUS_OK) throw ImageDecodeError(fault_of(st), str_cat("webp: cannot read the header (status ", st, ")"));
  if (config.input.has_animation)
    throw ImageDecodeError(ImageFault::animated, "webp: animated WebP (only still images are decoded)");
  const int w = config.input.width, h = config.input.height;
  if (w <= 0 || h <= 0) throw ImageDecodeError(ImageFault::corrupt, "webp: empty image");
  if (static_cast<int64_t>(w) * h > kMaxImagePixels)
    throw ImageDecodeError(ImageFault::too_large, str_cat("webp: ", w, "x", h, " is too large"));
  std::vector<uint8_t> rgba(static_cast<size_t>(w) * h * 4);
  config.output.colorspace = MODE_RGBA;  // straight (not premultiplied) alpha
  config.output.is_external_memory = 1;
  config.output.u.RGBA.rgba = rgba.data();
  config.output.u.RGBA.stride = w * 4;
  config.output.u.RGBA.size = rgba.size();
  st = WebPDecode(data, size, &config);
  WebPFreeDecBuffer(&config.output);
  if (st != VP8_STATUS_OK) throw ImageDecodeError(fault_of(st), str_cat("webp: decoding failed (status ", st, ")"));
  return rgba_on_white(rgba.data(), w, h);
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
  if (image.format & PNG_FORMAT_FLAG_LINEAR) {  // 16 bits per sample
    png_image_free(&image);
    Image out;
    std::vector<uint8_t> rgba;
    const std::string msg = decode_png16_into(data, size, out, rgba);
    if (!msg.empty()) {
      const bool cut = msg.find("Read Error") != std::string::npos || msg.find("Not enough") != std::string::npos;
      throw ImageDecodeError(cut ? ImageFault::truncated : ImageFault::corrupt, "png: " + msg);
    }
    return rgba_on_white(rgba.data(), out.width, out.height);
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
  png_image_free(&image);
  return rgba_on_white(rgba.data(), static_cast<int>(image.width), static_cast<int>(image.height));
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
  if (fmt == ImageFormat::webp) return decode_webp(data, size);
  if (fmt == ImageFormat::unknown) throw ImageDecodeError(ImageFault::not_an_image, "not a JPEG, PNG or WebP file");
  throw ImageDecodeError(ImageFault::unsupported_format,
                         str_cat(image_format_name(fmt), " images are not supported (JPEG, PNG and WebP only)"));
}

PngWebpHeader png_webp_header(const uint8_t* data, size_t size) {
  const ImageFormat fmt = sniff_image_format(data, size);
  PngWebpHeader h;
  if (fmt == ImageFormat::png) {
    // The signature, then the IHDR chunk: length, "IHDR", width and height big-endian.
    if (size < 24) throw ImageDecodeError(ImageFault::truncated, "png: the file ends inside its header");
    if (std::memcmp(data + 12, "IHDR", 4) != 0)
      throw ImageDecodeError(ImageFault::corrupt, "png: the first chunk is not IHDR");
    auto be32 = [&](size_t at) {
      return (uint32_t{data[at]} << 24) | (uint32_t{data[at + 1]} << 16) | (uint32_t{data[at + 2]} << 8) |
             uint32_t{data[at + 3]};
    };
    const uint32_t w = be32(16), ht = be32(20);
    if (w == 0 || ht == 0 || w > 0x7fffffffu || ht > 0x7fffffffu)
      throw ImageDecodeError(ImageFault::corrupt, str_cat("png: header size ", w, "x", ht));
    h.width = static_cast<int>(w);
    h.height = static_cast<int>(ht);
    h.lossless = true;
    return h;
  }
  if (fmt == ImageFormat::webp) {
    WebPBitstreamFeatures f;
    const VP8StatusCode st = WebPGetFeatures(data, size, &f);
    if (st != VP8_STATUS_OK)
      throw ImageDecodeError(st == VP8_STATUS_NOT_ENOUGH_DATA ? ImageFault::truncated : ImageFault::corrupt,
                             str_cat("webp: cannot read the header (status ", st, ")"));
    if (f.width <= 0 || f.height <= 0) throw ImageDecodeError(ImageFault::corrupt, "webp: empty image");
    h.width = f.width;
    h.height = f.height;
    h.lossless = f.format == 2;  // 0 undefined or mixed, 1 lossy, 2 lossless
    return h;
  }
  throw ImageDecodeError(ImageFault::not_an_image, str_cat("not a PNG or WebP file (", image_format_name(fmt), ")"));
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

std::vector<uint8_t> encode_webp(const uint8_t* pixels, int width, int height, int channels, int quality) {
  COCA_CHECK(channels == 3 || channels == 4, "encode_webp: channels must be 3 or 4");
  uint8_t* buf = nullptr;
  const int stride = width * channels;
  size_t size = 0;
  if (quality < 0)
    size = channels == 3 ? WebPEncodeLosslessRGB(pixels, width, height, stride, &buf)
                         : WebPEncodeLosslessRGBA(pixels, width, height, stride, &buf);
  else
    size = channels == 3 ? WebPEncodeRGB(pixels, width, height, stride, static_cast<float>(quality), &buf)
                         : WebPEncodeRGBA(pixels, width, height, stride, static_cast<float>(quality), &buf);
  COCA_CHECK(size > 0 && buf, "encode_webp: libwebp could not encode a ", width, "x", height, " image");
  std::vector<uint8_t> out(buf, buf + size);
  WebPFree(buf);
  return out;
}

}  // namespace coca
