// WebDataset tars for the coca-shard tests and benchmark, and a dump of a shard set to compare
// sets with:
//   wds_tool make DIR TARS PER_TAR [--clean] [--side N]
//       DIR/00000.tar ...: PER_TAR samples each, <key>.jpg + <key>.txt, every 5th sample also a
//       <key>.json naming it; unless --clean, some samples are unusable (every 17th has no
//       caption, every 23rd a damaged image). Images: N x 3N/4 JPEGs (default 24) of a few
//       hundred bytes, 64 distinct ones reused so that a million samples are quick to make.
//   wds_tool dump DIR
//       one line per sample of the shard set in DIR: key, SHA-256 of the stored image bytes
//       (raw sets: of the pixels), caption; in index order.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "coca/data/sha256.h"
#include "coca/data/shard.h"
#include "coca/data/shard_index.h"
#include "data/fixtures.h"

using namespace coca;
namespace fs = std::filesystem;

namespace {

std::vector<uint8_t> bytes_of(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }

int make(const fs::path& dir, int64_t tars, int64_t per_tar, bool clean, int side) {
  fs::create_directories(dir);
  std::vector<std::vector<uint8_t>> pool;
  for (uint64_t i = 0; i < 64; ++i) {
    const int w = side, h = std::max(1, side * 3 / 4);
    const auto px = coca::testing::noisy_rgb(w, h, i + 1);
    pool.push_back(encode_jpeg(px.data(), w, h, 3, 85));
  }
  for (int64_t t = 0; t < tars; ++t) {
    std::vector<std::pair<std::string, std::vector<uint8_t>>> members;
    for (int64_t k = 0; k < per_tar; ++k) {
      const int64_t g = t * per_tar + k;
      char key[32];
      std::snprintf(key, sizeof(key), "%05lld%04lld", static_cast<long long>(t), static_cast<long long>(k));
      std::vector<uint8_t> jpg = pool[static_cast<size_t>(g % 64)];
      // The sample number in a JPEG comment: every image's bytes are distinct.
      const std::string tag = std::to_string(g);
      std::vector<uint8_t> com = {0xFF, 0xFE, 0, static_cast<uint8_t>(tag.size() + 2)};
      com.insert(com.end(), tag.begin(), tag.end());
      jpg.insert(jpg.begin() + 2, com.begin(), com.end());
      if (!clean && g % 23 == 11) jpg.resize(jpg.size() / 3);  // cut short: a damaged image
      members.push_back({std::string(key) + ".jpg", jpg});
      if (clean || g % 17 != 5) members.push_back({std::string(key) + ".txt", bytes_of("sample " + tag + " of the set")});
      if (g % 5 == 0)
        members.push_back({std::string(key) + ".json", bytes_of(nlohmann::json{{"key", "k" + tag}, {"status", "success"}}.dump())});
    }
    char name[32];
    std::snprintf(name, sizeof(name), "%05lld.tar", static_cast<long long>(t));
    coca::testing::write_file(dir / name, coca::testing::make_tar(members));
  }
  return 0;
}

int dump(const std::string& dir) {
  const ShardIndex idx = ShardIndex::load(dir);
  for (size_t i = 0; i < idx.shards.size(); ++i) {
    ShardReader r(idx.shard_path(dir, i));
    COCA_CHECK(r.size() == idx.shards[i].samples, "shard ", idx.shards[i].file, " size differs from the index");
    if (r.size() == 0) continue;
    const auto keys = r.read_keys(0, r.size()), caps = r.read_captions(0, r.size());
    std::vector<uint8_t> bytes;
    const size_t raw = static_cast<size_t>(idx.image_size) * idx.image_size * 3;
    if (r.encoded()) r.read_encoded(0, r.size(), bytes);
    else bytes.resize(raw * static_cast<size_t>(r.size())), r.read_images(0, r.size(), bytes.data());
    for (int64_t k = 0; k < r.size(); ++k) {
      const size_t a = r.encoded() ? static_cast<size_t>(r.image_offset(k) - r.image_offset(0)) : raw * k;
      const size_t n = r.encoded() ? static_cast<size_t>(r.image_offset(k + 1) - r.image_offset(k)) : raw;
      std::printf("%s\t%s\t%s\n", keys[k].c_str(), sha256_hex(bytes.data() + a, n).c_str(), caps[k].c_str());
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "make" && argc >= 5) {
      bool clean = false;
      int side = 24;
      for (int i = 5; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--clean") clean = true;
        else if (a == "--side" && i + 1 < argc) side = std::atoi(argv[++i]);
        else throw Error("unknown option " + a);
      }
      return make(argv[2], std::atoll(argv[3]), std::atoll(argv[4]), clean, side);
    }
    if (mode == "dump" && argc == 3) return dump(argv[2]);
    std::fprintf(stderr, "usage: wds_tool make DIR TARS PER_TAR [--clean] [--side N] | dump DIR\n");
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "wds_tool: error: %s\n", e.what());
    return 1;
  }
}
