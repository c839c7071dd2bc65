// Image decoding (colour handling, each fault kind), resampling, LZF, and the shard file
// round trip, including reading a shard back with h5dump and h5py.
#include <gtest/gtest.h>

#include <png.h>
#include <zlib.h>

#include <csetjmp>
#include <cstdlib>

#include "coca/data/image.h"
#include "coca/data/lzf.h"
#include "coca/data/resample.h"
#include "coca/data/shard.h"
#include "data/fixtures.h"

using namespace coca;
using coca::testing::TempDir;

namespace {
ImageFault fault_of(const std::vector<uint8_t>& bytes) {
  try {
    decode_image(bytes);
  } catch (const ImageDecodeError& e) {
    return e.fault();
  }
  ADD_FAILURE() << "decoded without error";
  return ImageFault::corrupt;
}
// A 16-bit PNG (colour type 2 RGB or 4 grey+alpha) of the given big-endian samples, written
// with libpng's own writer.
std::vector<uint8_t> png16(int w, int h, int color_type, const std::vector<uint16_t>& samples) {
  std::vector<uint8_t> out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  if (!png || !info || setjmp(png_jmpbuf(png))) {
    ADD_FAILURE() << "libpng could not write the fixture";
    png_destroy_write_struct(&png, &info);
    return out;
  }
  png_set_write_fn(
      png, &out,
      [](png_structp p, png_bytep data, png_size_t n) {
        auto* v = static_cast<std::vector<uint8_t>*>(png_get_io_ptr(p));
        v->insert(v->end(), data, data + n);
      },
      nullptr);
  png_set_IHDR(png, info, w, h, 16, color_type, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  const int channels = color_type == PNG_COLOR_TYPE_RGB ? 3 : color_type == PNG_COLOR_TYPE_GRAY_ALPHA ? 2 : 4;
  std::vector<uint8_t> row(static_cast<size_t>(w) * channels * 2);
  for (int y = 0; y < h; ++y) {
    for (int i = 0; i < w * channels; ++i) {
      const uint16_t v = samples[static_cast<size_t>(y) * w * channels + i];
      row[i * 2] = static_cast<uint8_t>(v >> 8);
      row[i * 2 + 1] = static_cast<uint8_t>(v & 0xFF);
    }
    png_write_row(png, row.data());
  }
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return out;
}

}  // namespace

TEST(Image, WebpLosslessAlphaCompositedOnWhite) {
  // The PNG test's pixels: alpha 128 red -> (255, 127, 127); opaque blue; transparent -> white.
  const std::vector<uint8_t> rgba = {255, 0, 0, 128, 0, 0, 255, 255, 10, 20, 30, 0};
  const Image im = decode_image(encode_webp(rgba.data(), 3, 1, 4, -1));
  ASSERT_EQ(im.width, 3);
  ASSERT_EQ(im.height, 1);
  EXPECT_EQ(im.rgb, (std::vector<uint8_t>{255, 127, 127, 0, 0, 255, 255, 255, 255}));
}

TEST(Image, WebpLossyColour) {
  const auto px = coca::testing::solid_rgb(40, 24, 200, 40, 60);
  const Image im = decode_image(encode_webp(px.data(), 40, 24, 3, 95));
  ASSERT_EQ(im.width, 40);
  ASSERT_EQ(im.height, 24);
  for (size_t i = 0; i < im.rgb.size(); i += 3) {
    EXPECT_NEAR(im.rgb[i], 200, 6);
    EXPECT_NEAR(im.rgb[i + 1], 40, 6);
    EXPECT_NEAR(im.rgb[i + 2], 60, 6);
  }
}

TEST(Image, WebpFaults) {
  const auto anim = coca::testing::animated_webp(8, 6);
  try {
    decode_image(anim);
    ADD_FAILURE() << "an animated WebP decoded";
  } catch (const ImageDecodeError& e) {
    EXPECT_EQ(e.fault(), ImageFault::animated) << e.what();
    EXPECT_STREQ(image_fault_name(e.fault()), "webp_animation");
  }
  const auto px = coca::testing::solid_rgb(64, 64, 1, 2, 3);
  for (int quality : {-1, 80}) {
    const auto w = encode_webp(px.data(), 64, 64, 3, quality);
    EXPECT_EQ(fault_of(std::vector<uint8_t>(w.begin(), w.begin() + static_cast<long>(w.size() / 2))),
              ImageFault::truncated) << "quality " << quality;
    std::vector<uint8_t> bad = w;
    for (size_t i = 20; i < bad.size(); ++i) bad[i] ^= 0xA5;  // scramble after the chunk header
    EXPECT_EQ(fault_of(bad), ImageFault::corrupt) << "quality " << quality;
  }
}

TEST(Image, Png16BitKeepsTheHighByte) {
  // PIL keeps the high byte: 0x8080 -> 128, 0x4000 -> 64, 0xC010 -> 192 (no gamma change).
  const Image rgb = decode_image(png16(2, 1, PNG_COLOR_TYPE_RGB, {0x8080, 0x4000, 0xFFFF, 0x0000, 0x2000, 0xC010}));
  ASSERT_EQ(rgb.width, 2);
  EXPECT_EQ(rgb.rgb, (std::vector<uint8_t>{128, 64, 255, 0, 32, 192}));
  // Grey 0 at alpha 0x8000 (high byte 128) over white: (0*128 + 255*127 + 127) / 255 = 127;
  // opaque grey 0x6400 -> 100.
  const Image ga = decode_image(png16(2, 1, PNG_COLOR_TYPE_GRAY_ALPHA, {0x0000, 0x8000, 0x6400, 0xFFFF}));
  EXPECT_EQ(ga.rgb, (std::vector<uint8_t>{127, 127, 127, 100, 100, 100}));
  const auto full = png16(16, 16, PNG_COLOR_TYPE_RGB, std::vector<uint16_t>(16 * 16 * 3, 0x1234));
  EXPECT_EQ(fault_of(std::vector<uint8_t>(full.begin(), full.end() - 30)), ImageFault::truncated);
}

TEST(Image, CmykJpegConverted) {
  // Adobe CMYK JPEGs store inverted ink (255 = none); libjpeg writes the Adobe marker for CMYK.
  // Full magenta ink only -> (255, 0, 255); no ink -> white.
  std::vector<uint8_t> cmyk;
  for (int i = 0; i < 16 * 16; ++i) cmyk.insert(cmyk.end(), {255, 0, 255, 255});
  const Image m = decode_image(encode_jpeg(cmyk.data(), 16, 16, 4, 95));
  ASSERT_EQ(m.width, 16);
  for (size_t i = 0; i < m.rgb.size(); i += 3) {
    EXPECT_NEAR(m.rgb[i], 255, 3);
    EXPECT_NEAR(m.rgb[i + 1], 0, 3);
    EXPECT_NEAR(m.rgb[i + 2], 255, 3);
  }
}

TEST(Image, TooLargeRefusedFromTheHeader) {
  // 20000 x 20000 = 4e8 pixels > 2^28: refused before any pixel buffer is allocated.
  std::vector<uint8_t> png = coca::testing::png_solid(1, 1, 0, 0, 0);
  for (int k = 0; k < 2; ++k) {  // IHDR width, height: big-endian at bytes 16 and 20
    png[16 + 4 * k] = 0, png[17 + 4 * k] = 0, png[18 + 4 * k] = 0x4E, png[19 + 4 * k] = 0x20;
  }
  const uLong crc = crc32(0L, png.data() + 12, 17);  // over "IHDR" and its 13 data bytes
  for (int i = 0; i < 4; ++i) png[29 + i] = static_cast<uint8_t>(crc >> (24 - 8 * i));
  EXPECT_EQ(fault_of(png), ImageFault::too_large);
  std::vector<uint8_t> jpg = coca::testing::jpeg_solid(8, 8, 0, 0, 0);
  for (size_t i = 2; i + 8 < jpg.size(); ++i)
    if (jpg[i] == 0xFF && jpg[i + 1] == 0xC0) {  // SOF0: FF C0 len(2) precision(1) height(2) width(2)
      jpg[i + 5] = 0x4E, jpg[i + 6] = 0x20, jpg[i + 7] = 0x4E, jpg[i + 8] = 0x20;
      break;
    }
  EXPECT_EQ(fault_of(jpg), ImageFault::too_large);
}

TEST(Image, Large8000SquareJpegDecodes) {
  // 64 M pixels is under the 2^28 limit: decoded into one 192 MB RGB buffer.
  const int n = 8000;
  std::vector<uint8_t> grey(static_cast<size_t>(n) * n, 77);
  const auto jpg = encode_jpeg(grey.data(), n, n, 1, 80);
  grey = {};
  const Image im = decode_image(jpg);
  ASSERT_EQ(im.width, n);
  ASSERT_EQ(im.height, n);
  EXPECT_NEAR(im.pixel(n - 1, n - 1)[0], 77, 2);
  EXPECT_NEAR(im.pixel(n / 2, n / 3)[2], 77, 2);
}

TEST(Image, PngRgbaCompositedOnWhite) {
  // Straight alpha 128 red over white: 255*128/255 + 255*127/255 = 255 in red, 127 in G, B.
  const std::vector<uint8_t> rgba = {255, 0, 0, 128, 0, 0, 255, 255, 10, 20, 30, 0};
  const Image im = decode_image(encode_png(rgba.data(), 3, 1, 4));
  ASSERT_EQ(im.width, 3);
  ASSERT_EQ(im.height, 1);
  EXPECT_EQ(im.rgb, (std::vector<uint8_t>{255, 127, 127, 0, 0, 255, 255, 255, 255}));
}

TEST(Image, GreyExpandedToRgb) {
  const std::vector<uint8_t> grey = {0, 100, 200, 255};
  const Image p = decode_image(encode_png(grey.data(), 2, 2, 1));
  EXPECT_EQ(p.rgb, (std::vector<uint8_t>{0, 0, 0, 100, 100, 100, 200, 200, 200, 255, 255, 255}));
  const std::vector<uint8_t> ga = {50, 255, 50, 0};  // grey+alpha: opaque 50, transparent -> white
  const Image q = decode_image(encode_png(ga.data(), 2, 1, 2));
  EXPECT_EQ(q.rgb, (std::vector<uint8_t>{50, 50, 50, 255, 255, 255}));
  std::vector<uint8_t> flat(16 * 16, 90);
  const Image j = decode_image(encode_jpeg(flat.data(), 16, 16, 1, 95));
  ASSERT_EQ(j.rgb.size(), 16u * 16 * 3);
  for (uint8_t v : j.rgb) EXPECT_NEAR(v, 90, 2);
}

TEST(Image, JpegColour) {
  const Image j = decode_image(coca::testing::jpeg_solid(24, 16, 200, 40, 60));
  ASSERT_EQ(j.width, 24);
  ASSERT_EQ(j.height, 16);
  EXPECT_NEAR(j.rgb[0], 200, 4);
  EXPECT_NEAR(j.rgb[1], 40, 4);
  EXPECT_NEAR(j.rgb[2], 60, 4);
}

TEST(Image, FaultsAreClassified) {
  const auto png = coca::testing::png_solid(32, 32, 1, 2, 3);
  const auto jpg = coca::testing::jpeg_solid(64, 64, 1, 2, 3);
  EXPECT_EQ(fault_of({}), ImageFault::empty_file);
  const std::string txt = "just some text, not an image";
  EXPECT_EQ(fault_of(std::vector<uint8_t>(txt.begin(), txt.end())), ImageFault::not_an_image);
  const std::string gif = "GIF89a....";
  EXPECT_EQ(fault_of(std::vector<uint8_t>(gif.begin(), gif.end())), ImageFault::unsupported_format);
  EXPECT_EQ(fault_of(std::vector<uint8_t>(png.begin(), png.begin() + static_cast<long>(png.size() / 2))),
            ImageFault::truncated);
  EXPECT_EQ(fault_of(std::vector<uint8_t>(jpg.begin(), jpg.begin() + static_cast<long>(jpg.size() / 2))),
            ImageFault::truncated);
  std::vector<uint8_t> bad_png = png;
  for (size_t i = 40; i < bad_png.size(); ++i) bad_png[i] ^= 0x5A;  // scramble after the header
  EXPECT_EQ(fault_of(bad_png), ImageFault::corrupt);
  // A JPEG whose frame header claims zero width is corrupt, not cut short.
  std::vector<uint8_t> bad_jpg = jpg;
  for (size_t i = 2; i + 8 < bad_jpg.size(); ++i)
    if (bad_jpg[i] == 0xFF && bad_jpg[i + 1] == 0xC0) {  // SOF0: FF C0 len(2) precision(1) height(2) width(2)
      bad_jpg[i + 7] = 0;
      bad_jpg[i + 8] = 0;
      break;
    }
  EXPECT_EQ(fault_of(bad_jpg), ImageFault::corrupt);
}

TEST(Resample, ConstantStaysConstantAndCheckerboardAverages) {
  const auto flat = coca::testing::solid_rgb(37, 23, 10, 120, 250);
  const RgbView v{flat.data(), 37, 23, 37 * 3};
  std::vector<uint8_t> out(11 * 7 * 3);
  for (auto f : {ResampleFilter::bilinear, ResampleFilter::bicubic, ResampleFilter::lanczos3}) {
    resample_rgb_u8(v, {0, 0, 37, 23}, 11, 7, f, out.data());
    for (size_t i = 0; i < out.size(); i += 3) {
      ASSERT_EQ(out[i], 10);
      ASSERT_EQ(out[i + 1], 120);
      ASSERT_EQ(out[i + 2], 250);
    }
  }
  std::vector<uint8_t> cb(64 * 64 * 3);
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 64; ++x)
      for (int c = 0; c < 3; ++c) cb[(y * 64 + x) * 3 + c] = ((x + y) % 2) ? 255 : 0;
  std::vector<uint8_t> small(8 * 8 * 3);
  resample_rgb_u8({cb.data(), 64, 64, 64 * 3}, {0, 0, 64, 64}, 8, 8, ResampleFilter::bicubic, small.data());
  for (uint8_t p : small) EXPECT_NEAR(p, 128, 3);  // antialiased: no aliasing to 0 or 255
}

TEST(Resample, ShorterSideAndCentreCrop) {
  // 60x20: left 20 columns red, middle 20 green, right 20 blue. The centre crop is green.
  Image im;
  im.width = 60;
  im.height = 20;
  im.rgb.resize(60 * 20 * 3);
  for (int y = 0; y < 20; ++y)
    for (int x = 0; x < 60; ++x) im.rgb[(y * 60 + x) * 3 + x / 20] = 255;
  const Image out = resize_shorter_center_crop(im, 10);
  ASSERT_EQ(out.width, 10);
  ASSERT_EQ(out.height, 10);
  for (int y = 0; y < 10; ++y)
    for (int x = 2; x < 8; ++x) {
      const uint8_t* p = out.pixel(x, y);
      EXPECT_EQ(p[0], 0);
      EXPECT_EQ(p[1], 255);
      EXPECT_EQ(p[2], 0);
    }
}

TEST(Resample, NormalisedPlanes) {
  const auto flat = coca::testing::solid_rgb(4, 4, 255, 0, 128);
  const float mean[3] = {0.5f, 0.5f, 0.5f}, stdv[3] = {0.5f, 0.25f, 1.0f};
  std::vector<float> out(3 * 4 * 4);
  crop_rgb_normalized({flat.data(), 4, 4, 12}, 0, 0, 4, 4, mean, stdv, out.data());
  EXPECT_FLOAT_EQ(out[0], 1.0f);    // (1 - 0.5) / 0.5
  EXPECT_FLOAT_EQ(out[16], -2.0f);  // (0 - 0.5) / 0.25
  EXPECT_NEAR(out[32], 128.0f / 255.0f - 0.5f, 1e-6);
}

TEST(Lzf, RoundTrip) {
  Generator g(5);
  std::vector<uint8_t> data(100000);
  for (size_t i = 0; i < data.size(); ++i) data[i] = (i % 1000 < 600) ? static_cast<uint8_t>(i % 7) : static_cast<uint8_t>(g.below(256));
  std::vector<uint8_t> comp(data.size() + 1000), back(data.size());
  const size_t n = lzf_compress(data.data(), data.size(), comp.data(), comp.size());
  ASSERT_GT(n, 0u);
  EXPECT_LT(n, data.size());
  bool small = false;
  EXPECT_EQ(lzf_decompress(comp.data(), n, back.data(), back.size(), &small), data.size());
  EXPECT_EQ(back, data);
  EXPECT_EQ(lzf_decompress(comp.data(), n, back.data(), 10, &small), 0u);
  EXPECT_TRUE(small);
  std::vector<uint8_t> noise(5000);
  for (auto& b : noise) b = static_cast<uint8_t>(g.below(256));
  EXPECT_EQ(lzf_compress(noise.data(), noise.size(), comp.data(), noise.size() / 2), 0u);  // does not fit
}

class ShardRoundTrip : public ::testing::TestWithParam<Compression> {};

TEST_P(ShardRoundTrip, WriteThenRead) {
  TempDir dir("shard");
  const std::string path = dir.str("s.h5");
  ShardLayout layout;
  layout.image_size = 6;
  layout.chunk_images = 4;
  layout.compression = GetParam();
  layout.context_length = 5;
  layout.labels = true;
  layout.classnames = {"cat", "d\xc3\xb6g", "emoji \xf0\x9f\x98\x80"};
  const int n = 11;  // not a multiple of the chunk
  std::vector<std::vector<uint8_t>> images;
  {
    ShardWriter w(path, layout);
    Generator g(3);
    for (int i = 0; i < n; ++i) {
      std::vector<uint8_t> px(6 * 6 * 3);
      for (size_t k = 0; k < px.size(); ++k) px[k] = (k < 54) ? static_cast<uint8_t>(i) : static_cast<uint8_t>(g.below(256));
      images.push_back(px);
      std::vector<int32_t> tok = {i, i + 1, i + 2, i + 3, i + 4};
      w.add(px.data(), "caption \xc3\xa9 " + std::to_string(i), "key/" + std::to_string(i), tok.data(), i % 3);
    }
    w.close();
  }
  ShardReader r(path);
  ASSERT_EQ(r.size(), n);
  EXPECT_EQ(r.image_size(), 6);
  EXPECT_EQ(r.chunk_images(), 4);
  EXPECT_EQ(r.context_length(), 5);
  EXPECT_EQ(r.classnames(), layout.classnames);
  std::vector<uint8_t> px(static_cast<size_t>(n) * 108);
  r.read_images(0, n, px.data());
  for (int i = 0; i < n; ++i)
    EXPECT_TRUE(std::equal(images[i].begin(), images[i].end(), px.begin() + i * 108)) << i;
  std::vector<int32_t> tok(3 * 5);
  r.read_tokens(4, 3, tok.data());
  EXPECT_EQ(tok, (std::vector<int32_t>{4, 5, 6, 7, 8, 5, 6, 7, 8, 9, 6, 7, 8, 9, 10}));
  std::vector<int32_t> lab(n);
  r.read_labels(0, n, lab.data());
  for (int i = 0; i < n; ++i) EXPECT_EQ(lab[i], i % 3);
  EXPECT_EQ(r.read_captions(10, 1)[0], "caption \xc3\xa9 10");
  EXPECT_EQ(r.read_keys(2, 2), (std::vector<std::string>{"key/2", "key/3"}));
  EXPECT_THROW(r.read_images(9, 5, px.data()), Error);

  // Other tools read the same file. h5dump for the uncompressed and gzip layouts; h5py
  // (which has LZF built in) for all three, when the system Python has it.
  if (GetParam() != Compression::lzf && std::system("command -v h5dump > /dev/null 2>&1") == 0) {
    const std::string cmd = "h5dump -d /labels " + path + " > " + dir.str("dump.txt") + " 2>&1";
    EXPECT_EQ(std::system(cmd.c_str()), 0);
    const auto dump = coca::testing::read_file(dir.str("dump.txt"));
    const std::string s(dump.begin(), dump.end());
    EXPECT_NE(s.find("0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1"), std::string::npos) << s;
  }
  const char* py = "/usr/bin/python3";
  if (std::system((std::string(py) + " -c 'import h5py' > /dev/null 2>&1").c_str()) == 0) {
    const std::string script =
        std::string(py) + " -c \"import h5py,sys; f=h5py.File('" + path +
        "','r'); im=f['images']; assert im.shape==(11,6,6,3), im.shape; assert im.dtype=='uint8';"
        " assert int(im[7,0,0,0])==7; assert f['captions'][3].decode()=='caption \\u00e9 3';"
        " assert list(f['tokens'][2])==[2,3,4,5,6]; assert f.attrs['num_samples']==11;"
        " assert [c.decode() if isinstance(c,bytes) else c for c in f.attrs['classnames']][1]=='d\\u00f6g'\"";
    EXPECT_EQ(std::system(script.c_str()), 0) << script;
  }
}

INSTANTIATE_TEST_SUITE_P(Compression, ShardRoundTrip,
                         ::testing::Values(Compression::none, Compression::gzip, Compression::lzf));
