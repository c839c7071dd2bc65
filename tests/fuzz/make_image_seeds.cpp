// Writes the image harness's seeds, tests/fuzz/corpus/image/seed-*: small JPEG, PNG and WebP
// files of every colour layout the decoders handle, made with coca's own encoders (image.h), and
// a few damaged ones. Built with the harnesses: build-fuzz/make_image_seeds tests/fuzz/corpus/image
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "coca/data/image.h"

using namespace coca;

namespace {

std::vector<uint8_t> gradient(int w, int h, int channels) {
  std::vector<uint8_t> px(static_cast<size_t>(w) * h * channels);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < channels; ++c)
        px[(static_cast<size_t>(y) * w + x) * channels + c] = static_cast<uint8_t>((x * 37 + y * 11 + c * 91) & 0xff);
  return px;
}

void write(const std::string& dir, const std::string& name, const std::vector<uint8_t>& bytes) {
  std::ofstream(dir + "/seed-" + name, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_image_seeds <corpus/image dir>\n");
    return 2;
  }
  const std::string dir = argv[1];
  for (int ch : {1, 3}) {
    write(dir, "jpeg_c" + std::to_string(ch) + ".jpg", encode_jpeg(gradient(13, 9, ch).data(), 13, 9, ch, 75));
  }
  write(dir, "jpeg_q20_odd.jpg", encode_jpeg(gradient(17, 5, 3).data(), 17, 5, 3, 20));
  for (int ch : {1, 2, 3, 4}) write(dir, "png_c" + std::to_string(ch) + ".png", encode_png(gradient(7, 6, ch).data(), 7, 6, ch));
  write(dir, "webp_lossy.webp", encode_webp(gradient(9, 7, 3).data(), 9, 7, 3, 50));
  write(dir, "webp_lossless.webp", encode_webp(gradient(9, 7, 3).data(), 9, 7, 3, -1));
  write(dir, "webp_alpha.webp", encode_webp(gradient(6, 6, 4).data(), 6, 6, 4, -1));
  std::vector<uint8_t> cut = encode_jpeg(gradient(16, 16, 3).data(), 16, 16, 3, 90);
  cut.resize(cut.size() * 2 / 3);
  write(dir, "jpeg_truncated.jpg", cut);
  std::vector<uint8_t> png = encode_png(gradient(8, 8, 3).data(), 8, 8, 3);
  png.resize(png.size() - 20);
  write(dir, "png_truncated.png", png);
  write(dir, "gif_header.gif", {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0, 0, 0});
  return 0;
}
