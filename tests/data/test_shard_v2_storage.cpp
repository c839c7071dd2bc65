// Format 2 shards on disk: the file is its payload plus at most one partly filled image
// chunk and HDF5's fixed structures, and reads stay exact across chunk boundaries.
#include <gtest/gtest.h>

#include "coca/data/shard.h"
#include "data/fixtures.h"

using namespace coca;
using coca::testing::TempDir;
using coca::testing::noisy_rgb;
namespace fs = std::filesystem;

namespace {


}  // namespace

// The file holds its payload (encoded images, offsets and sizes, tokens, strings) plus at most
// one partly filled image_bytes chunk and a fixed amount of HDF5 metadata: no per-row dataset
// is chunked wider than the shard. Every run of rows still reads back exactly.
TEST(ShardV2Storage, FileSizeIsCloseToThePayload) {
  TempDir t("v2size");
  ShardLayout layout;
  layout.image_format = ShardImageFormat::jpeg;
  layout.image_size = 512;
  layout.chunk_images = 4;
  layout.context_length = 77;
  const int n = 60;
  std::vector<std::vector<uint8_t>> imgs;
  int64_t payload = 0;
  const std::string path = t.str("s.h5");
  {
    ShardWriter w(path, layout);
    for (int i = 0; i < n; ++i) {
      const int wd = 90 + (i % 5) * 7, ht = 70 + (i % 3) * 5;
      imgs.push_back(encode_jpeg(noisy_rgb(wd, ht, static_cast<uint64_t>(i)).data(), wd, ht, 3, 90));
      const std::string caption = "a picture number " + std::to_string(i), key = "key" + std::to_string(i);
      std::vector<int32_t> tokens(77, i);
      w.add_encoded(imgs.back().data(), imgs.back().size(), wd, ht, caption, key, tokens.data());
      payload += static_cast<int64_t>(imgs.back().size() + caption.size() + key.size()) + 16 + 77 * 4;
    }
    w.close();
  }
  ASSERT_GT(payload, 4 * layout.blob_chunk_bytes) << "the test needs a blob of several chunks";
  ASSERT_LT(payload, 1 << 20) << "the test needs a blob smaller than a 1 MiB chunk";
  const int64_t file = static_cast<int64_t>(fs::file_size(path));
  // At most one 64 KiB image chunk partly filled, and HDF5's own structures (superblock,
  // object headers, chunk indices, the string heaps). Measured: 44 KB over the payload, 20 KB
  // of it the partly filled chunk.
  const int64_t partial_chunk = 64 * 1024, fixed = 16 * 1024;
  EXPECT_LE(file, payload + partial_chunk + fixed) << "payload " << payload << ", file " << file;
  ShardReader r(path);
  ASSERT_EQ(r.size(), n);
  std::vector<uint8_t> got;
  for (int64_t start = 0; start < n; start += 3)
    for (int64_t count : {1, 4, 11}) {
      if (start + count > n) continue;
      r.read_encoded(start, count, got);
      std::vector<uint8_t> want;
      for (int64_t i = start; i < start + count; ++i)
        want.insert(want.end(), imgs[static_cast<size_t>(i)].begin(), imgs[static_cast<size_t>(i)].end());
      ASSERT_EQ(got, want) << "rows " << start << "+" << count;
    }
  std::vector<int32_t> tok(77);
  r.read_tokens(n - 1, 1, tok.data());
  EXPECT_EQ(tok[76], n - 1);
  EXPECT_EQ(r.read_keys(n - 1, 1)[0], "key" + std::to_string(n - 1));
}

// Small chunks of an odd size: rows straddle many chunk boundaries, and a blob of several MB
// is appended in runs of whole chunks (the writer keeps the remainder for the next run).
TEST(ShardV2Storage, SmallBlobChunksReadBackExactly) {
  TempDir t("v2chunks");
  ShardLayout layout;
  layout.image_format = ShardImageFormat::jpeg;
  layout.image_size = 512;
  layout.blob_chunk_bytes = 4099;
  std::vector<std::vector<uint8_t>> imgs;
  int64_t total = 0;
  {
    ShardWriter w(t.str("s.h5"), layout);
    for (int i = 0; i < 12; ++i) {
      const int wd = 300 + i;  // noise: about 200 KB a PNG
      imgs.push_back(encode_png(noisy_rgb(wd, 300, static_cast<uint64_t>(i)).data(), wd, 300, 3));
      total += static_cast<int64_t>(imgs.back().size());
      w.add_encoded(imgs.back().data(), imgs.back().size(), wd, 300, "c", "k");
    }
    w.close();
  }
  ASSERT_GT(total, 2 << 20) << "the test needs several appends";
  ShardReader r(t.str("s.h5"));
  std::vector<uint8_t> got;
  for (int64_t i = 0; i < 12; ++i) {
    r.read_encoded(i, 1, got);
    EXPECT_EQ(got, imgs[static_cast<size_t>(i)]) << "row " << i;
  }
}
