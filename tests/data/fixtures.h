#pragma once
// Small inputs the data tests write for themselves: images, tars, shard sets.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "coca/data/image.h"
#include "coca/data/shard.h"
#include "coca/data/shard_index.h"
#include "coca/tensor/random.h"

namespace coca::testing {

namespace fs = std::filesystem;

// A fresh directory under the system temp folder, removed on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& tag) {
    Generator g(static_cast<uint64_t>(reinterpret_cast<uintptr_t>(this)) ^ static_cast<uint64_t>(::getpid()));
    path_ = fs::temp_directory_path() / ("coca-" + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(g.next_u64() % 1000000));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  std::string str(const std::string& rel = "") const { return rel.empty() ? path_.string() : (path_ / rel).string(); }

 private:
  fs::path path_;
};

inline void write_file(const fs::path& p, const std::vector<uint8_t>& bytes) {
  fs::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

inline void write_text(const fs::path& p, const std::string& s) {
  write_file(p, std::vector<uint8_t>(s.begin(), s.end()));
}

inline std::vector<uint8_t> read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// w x h RGB image of one colour.
inline std::vector<uint8_t> solid_rgb(int w, int h, uint8_t r, uint8_t g, uint8_t b) {
  std::vector<uint8_t> px(static_cast<size_t>(w) * h * 3);
  for (size_t i = 0; i < px.size(); i += 3) { px[i] = r; px[i + 1] = g; px[i + 2] = b; }
  return px;
}

inline std::vector<uint8_t> png_solid(int w, int h, uint8_t r, uint8_t g, uint8_t b) {
  const auto px = solid_rgb(w, h, r, g, b);
  return encode_png(px.data(), w, h, 3);
}

inline std::vector<uint8_t> jpeg_solid(int w, int h, uint8_t r, uint8_t g, uint8_t b) {
  const auto px = solid_rgb(w, h, r, g, b);
  return encode_jpeg(px.data(), w, h, 3, 95);
}

inline void put_u32le(std::vector<uint8_t>& v, uint32_t x) {
  for (int i = 0; i < 4; ++i) v.push_back(static_cast<uint8_t>(x >> (8 * i)));
}
inline void put_u24le(std::vector<uint8_t>& v, uint32_t x) {
  for (int i = 0; i < 3; ++i) v.push_back(static_cast<uint8_t>(x >> (8 * i)));
}

// An animated WebP (VP8X with the animation flag, ANIM, two ANMF frames) whose frames are the
// VP8L chunk of a still lossless WebP, laid out as the WebP container specification describes.
inline std::vector<uint8_t> animated_webp(int w, int h) {
  const auto px = solid_rgb(w, h, 10, 200, 30);
  const std::vector<uint8_t> still = encode_webp(px.data(), w, h, 3, -1);
  const std::vector<uint8_t> frame(still.begin() + 12, still.end());  // "VP8L" size payload [pad]
  std::vector<uint8_t> body = {'W', 'E', 'B', 'P', 'V', 'P', '8', 'X'};
  put_u32le(body, 10);
  body.push_back(0x02);  // animation flag
  body.insert(body.end(), {0, 0, 0});
  put_u24le(body, static_cast<uint32_t>(w - 1));
  put_u24le(body, static_cast<uint32_t>(h - 1));
  body.insert(body.end(), {'A', 'N', 'I', 'M'});
  put_u32le(body, 6);
  body.insert(body.end(), {255, 255, 255, 255, 0, 0});  // background, loop forever
  for (int f = 0; f < 2; ++f) {
    body.insert(body.end(), {'A', 'N', 'M', 'F'});
    put_u32le(body, static_cast<uint32_t>(16 + frame.size()));
    put_u24le(body, 0);
    put_u24le(body, 0);
    put_u24le(body, static_cast<uint32_t>(w - 1));
    put_u24le(body, static_cast<uint32_t>(h - 1));
    put_u24le(body, 100);  // duration, ms
    body.push_back(0);
    body.insert(body.end(), frame.begin(), frame.end());
  }
  std::vector<uint8_t> out = {'R', 'I', 'F', 'F'};
  put_u32le(out, static_cast<uint32_t>(body.size()));
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

// A ustar archive of (name, bytes) members; `cut` > 0 drops that many bytes from the end.
inline std::vector<uint8_t> make_tar(const std::vector<std::pair<std::string, std::vector<uint8_t>>>& members,
                                     size_t cut = 0) {
  std::vector<uint8_t> out;
  for (const auto& [name, data] : members) {
    uint8_t h[512] = {};
    std::snprintf(reinterpret_cast<char*>(h), 100, "%s", name.c_str());
    std::snprintf(reinterpret_cast<char*>(h + 100), 8, "%07o", 0644);
    std::snprintf(reinterpret_cast<char*>(h + 108), 8, "%07o", 0);
    std::snprintf(reinterpret_cast<char*>(h + 116), 8, "%07o", 0);
    std::snprintf(reinterpret_cast<char*>(h + 124), 12, "%011llo", static_cast<unsigned long long>(data.size()));
    std::snprintf(reinterpret_cast<char*>(h + 136), 12, "%011o", 0);
    h[156] = '0';
    std::memcpy(h + 257, "ustar\0" "00", 8);
    std::memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (uint8_t c : h) sum += c;
    std::snprintf(reinterpret_cast<char*>(h + 148), 8, "%06o", sum);
    h[155] = ' ';
    out.insert(out.end(), h, h + 512);
    out.insert(out.end(), data.begin(), data.end());
    out.resize((out.size() + 511) / 512 * 512, 0);
  }
  out.resize(out.size() + 1024, 0);
  if (cut > 0) out.resize(out.size() - std::min(cut, out.size()));
  return out;
}

// A shard set whose sample g (global index) has every pixel = g % 251 and tokens [g, g+1, ...],
// key "s<g>", label g % num_classes (when num_classes > 0).
inline ShardIndex make_indexed_shards(const std::string& dir, const std::vector<int64_t>& counts, int size = 8,
                                      int chunk = 4, int context = 3, int num_classes = 0,
                                      Compression comp = Compression::none) {
  fs::create_directories(dir);
  ShardIndex index;
  index.image_size = size;
  index.chunk_images = chunk;
  index.context_length = context;
  index.compression = compression_name(comp);
  for (int c = 0; c < num_classes; ++c) index.classnames.push_back("class " + std::to_string(c));
  int64_t g = 0;
  for (size_t s = 0; s < counts.size(); ++s) {
    ShardLayout layout;
    layout.image_size = size;
    layout.chunk_images = chunk;
    layout.context_length = context;
    layout.compression = comp;
    layout.labels = num_classes > 0;
    layout.classnames = index.classnames;
    const std::string name = shard_file_name(static_cast<int64_t>(s));
    ShardWriter w((fs::path(dir) / name).string(), layout);
    for (int64_t i = 0; i < counts[s]; ++i, ++g) {
      const auto px = solid_rgb(size, size, static_cast<uint8_t>(g % 251), static_cast<uint8_t>(g % 251),
                                static_cast<uint8_t>(g % 251));
      std::vector<int32_t> tok;
      for (int k = 0; k < context; ++k) tok.push_back(static_cast<int32_t>(g + k));
      w.add(px.data(), "caption " + std::to_string(g), "s" + std::to_string(g), tok.data(),
            num_classes > 0 ? static_cast<int32_t>(g % num_classes) : -1);
    }
    w.close();
    index.shards.push_back({name, counts[s]});
    index.total_samples += counts[s];
  }
  index.save(dir);
  return index;
}

// Noisy gradients: photo-like pixels that JPEG cannot code exactly (rows of several KB).
inline std::vector<uint8_t> noisy_rgb(int w, int h, uint64_t seed) {
  Generator g(seed);
  std::vector<uint8_t> px(static_cast<size_t>(w) * h * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c)
        px[(static_cast<size_t>(y) * w + x) * 3 + c] =
            static_cast<uint8_t>((x * (c + 1) + y * 2 + static_cast<int>(g.below(40))) % 256);
  return px;
}

#ifdef COCA_SHARD_BIN
// Runs coca-shard with `args`, output to `log`; its exit status (-1 when it did not exit).
inline int run_tool(const std::string& args, const std::string& log) {
  const std::string cmd = std::string(COCA_SHARD_BIN) + " " + args + " > " + log + " 2>&1";
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}
#endif

}  // namespace coca::testing
