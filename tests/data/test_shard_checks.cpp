// What a shard reader refuses: chunks whose Fletcher32 checksum no longer matches (bytes
// damaged on disk), and token ids outside the tokenizer's vocabulary. Both must fail as one
// Error line naming the shard, since the loader skips a shard on such an Error.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <fstream>
#include <functional>

#include "coca/data/h5.h"
#include "coca/data/loader.h"
#include "coca/data/shard.h"
#include "coca/data/shard_index.h"
#include "data/fixtures.h"

using namespace coca;
using coca::testing::TempDir;
namespace fs = std::filesystem;

namespace {

constexpr int kSize = 64, kChunk = 4, kRows = 12, kContext = 4;
constexpr size_t kImageBytes = static_cast<size_t>(kSize) * kSize * 3;

// kRows noise images (so a damaged chunk cannot look like the original), tokens
// [i, i+1, i+2, i+3], label i % 2.
std::vector<uint8_t> write_noise_shard(const std::string& path, Compression comp, bool checksum) {
  ShardLayout layout;
  layout.image_size = kSize;
  layout.chunk_images = kChunk;
  layout.compression = comp;
  layout.context_length = kContext;
  layout.labels = true;
  layout.classnames = {"even", "odd"};
  layout.checksum = checksum;
  std::vector<uint8_t> all(kImageBytes * kRows);
  Generator g(11);
  for (auto& p : all) p = static_cast<uint8_t>(g.next_u64());
  ShardWriter w(path, layout);
  for (int i = 0; i < kRows; ++i) {
    const std::vector<int32_t> tok = {i, i + 1, i + 2, i + 3};
    w.add(all.data() + kImageBytes * i, "caption " + std::to_string(i), "key " + std::to_string(i), tok.data(), i % 2);
  }
  w.close();
  return all;
}

// File offset and stored size of the chunk of `dataset` whose first row is `row`.
std::pair<haddr_t, hsize_t> chunk_location(const std::string& path, const char* dataset, hsize_t row) {
  h5::init();
  h5::Handle f(h5::check_id(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "open", path), h5::Handle::Kind::file);
  h5::Handle d(h5::check_id(H5Dopen2(f, dataset, H5P_DEFAULT), "open dataset", path), h5::Handle::Kind::dataset);
  std::vector<hsize_t> coord(h5::dataset_dims(d, path).size(), 0);
  coord[0] = row;
  unsigned mask = 0;
  haddr_t addr = 0;
  hsize_t size = 0;
  h5::check(H5Dget_chunk_info_by_coord(d, coord.data(), &mask, &addr, &size), "H5Dget_chunk_info_by_coord", path);
  return {addr, size};
}

// Overwrites `n` bytes from `offset` with their complement, so every byte changes.
void damage(const std::string& path, uint64_t offset, size_t n) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  std::vector<char> buf(n);
  f.seekg(static_cast<std::streamoff>(offset));
  f.read(buf.data(), static_cast<std::streamsize>(n));
  for (char& c : buf) c = static_cast<char>(~c);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(buf.data(), static_cast<std::streamsize>(n));
  ASSERT_TRUE(f.good()) << path;
}

// Damages the middle of the chunk of `dataset` starting at `row`; returns how many bytes.
size_t damage_chunk(const std::string& path, const char* dataset, hsize_t row) {
  const auto [addr, size] = chunk_location(path, dataset, row);
  const size_t n = std::min<size_t>(32 * 1024, static_cast<size_t>(size) / 2);
  damage(path, addr + size / 4, n);
  return n;
}

// The message of the Error `read` throws, and that nothing was printed to stderr meanwhile.
template <typename Read>
std::string error_of(Read&& read) {
  ::testing::internal::CaptureStderr();
  std::string msg;
  try {
    read();
  } catch (const Error& e) {
    msg = e.what();
  }
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(err, "") << "HDF5 printed its error stack";
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  return msg;
}

}  // namespace

class ShardChecksum : public ::testing::TestWithParam<Compression> {};

TEST_P(ShardChecksum, DamagedImageChunkFailsNamingFileAndDataset) {
  TempDir dir("checksum");
  const std::string path = dir.str("shard-00000.h5");
  const std::vector<uint8_t> original = write_noise_shard(path, GetParam(), true);
  {
    ShardReader r(path);
    EXPECT_TRUE(r.has_checksums());
    h5::Handle f(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), h5::Handle::Kind::file);
    EXPECT_EQ(h5::read_string_attribute(f, "checksum", path), "fletcher32");
  }
  // HDF5's default transfer list verifies too (the reader also sets it explicitly).
  EXPECT_EQ(H5Pget_edc_check(H5P_DATASET_XFER_DEFAULT), H5Z_ENABLE_EDC);
  damage_chunk(path, "images", kChunk);  // the second chunk: rows [4, 8)

  ShardReader r(path);
  std::vector<uint8_t> px(kImageBytes * kChunk);
  const std::string msg = error_of([&] { r.read_images(kChunk, kChunk, px.data()); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("'images'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("checksum does not match"), std::string::npos) << msg;
  // A read that only touches the damaged chunk in part fails too.
  EXPECT_THROW(r.read_images(2, 3, px.data()), Error);
  // The chunks either side are intact and still read.
  r.read_images(0, kChunk, px.data());
  EXPECT_TRUE(std::equal(px.begin(), px.end(), original.begin()));
  r.read_images(2 * kChunk, kChunk, px.data());
  EXPECT_TRUE(std::equal(px.begin(), px.end(), original.begin() + static_cast<long>(2 * kChunk * kImageBytes)));
}

INSTANTIATE_TEST_SUITE_P(Compression, ShardChecksum,
                         ::testing::Values(Compression::none, Compression::gzip, Compression::lzf));

// The numeric datasets are checksummed too. (captions and keys are not: HDF5 refuses filters
// on variable-length strings.)
TEST(ShardChecksumAllDatasets, TokensAndLabelsFailOnTheirOwnRead) {
  TempDir dir("checksum-all");
  const std::string clean = dir.str("clean.h5");
  write_noise_shard(clean, Compression::none, true);
  std::vector<int32_t> ints(static_cast<size_t>(kRows) * kContext);
  const std::vector<std::pair<const char*, std::function<void(const ShardReader&)>>> reads = {
      {"tokens", [&](const ShardReader& r) { r.read_tokens(0, kRows, ints.data()); }},
      {"labels", [&](const ShardReader& r) { r.read_labels(0, kRows, ints.data()); }},
  };
  for (const auto& [name, read] : reads) {
    const std::string path = dir.str(std::string(name) + ".h5");
    fs::copy_file(clean, path);
    damage_chunk(path, name, 0);
    ShardReader r(path);
    const std::string msg = error_of([&, &read = read] { read(r); });
    EXPECT_NE(msg.find(std::string("'") + name + "'"), std::string::npos) << name << ": " << msg;
    EXPECT_NE(msg.find("checksum does not match"), std::string::npos) << name << ": " << msg;
    std::vector<uint8_t> px(kImageBytes * kRows);
    r.read_images(0, kRows, px.data());  // the images are untouched
  }
}

// A shard without checksums (as written before they existed) still loads, and the same
// damage goes unnoticed: what the checksum is for.
TEST(ShardChecksumAllDatasets, UncheckedShardLoadsAndDamagePassesSilently) {
  TempDir dir("no-checksum");
  const std::string path = dir.str("old.h5");
  const std::vector<uint8_t> original = write_noise_shard(path, Compression::none, false);
  damage_chunk(path, "images", kChunk);
  ShardReader r(path);
  EXPECT_FALSE(r.has_checksums());
  std::vector<uint8_t> px(kImageBytes * kChunk);
  r.read_images(kChunk, kChunk, px.data());
  EXPECT_FALSE(std::equal(px.begin(), px.end(), original.begin() + static_cast<long>(kChunk * kImageBytes)));
}

// Through the loader: damaged pixels in an uncompressed shard (which decode as any other
// bytes would) stop the epoch with an error naming the shard, or with skip_bad_shards are
// skipped with the rest of that shard; none of the damaged rows reaches a batch.
TEST(ShardChecksumLoader, DamagedShardIsAnErrorOrSkipped) {
  TempDir dir("checksum-loader");
  coca::testing::make_indexed_shards(dir.str(), {12, 12, 12}, 16, 4);
  damage_chunk(dir.str("shard-00001.h5"), "images", 4);  // global samples 16..19
  LoaderOptions o;
  o.dir = dir.str();
  o.batch_size = 4;
  o.shuffle_buffer = 6;
  o.threads = 1;
  o.augment = false;
  {
    ShardLoader loader(o);
    loader.start_epoch(0);
    Batch b;
    std::string msg;
    try {
      while (loader.next(b)) {
      }
    } catch (const Error& e) {
      msg = e.what();
    }
    EXPECT_NE(msg.find("shard-00001.h5"), std::string::npos) << msg;
    EXPECT_NE(msg.find("checksum does not match"), std::string::npos) << msg;
  }
  o.skip_bad_shards = true;
  ShardLoader loader(o);
  loader.start_epoch(0);
  Batch b;
  ::testing::internal::CaptureStderr();
  while (loader.next(b))
    for (int64_t g : b.indices) EXPECT_TRUE(g < 16 || g >= 20) << "damaged sample " << g << " was yielded";
  const std::string warning = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(warning.find("checksum does not match"), std::string::npos) << warning;
  EXPECT_FALSE(loader.state().skipped.empty());
}

TEST(ShardIndexChecksum, FieldRoundTripsAndOldIndexReadsAsNone) {
  ShardIndex idx;
  idx.image_size = 8;
  idx.shards.push_back({"shard-00000.h5", 3});
  idx.total_samples = 3;
  EXPECT_EQ(idx.to_json().at("checksum"), "fletcher32");
  nlohmann::json j = idx.to_json();
  EXPECT_EQ(ShardIndex::from_json(j, "x").checksum, "fletcher32");
  j.erase("checksum");
  EXPECT_EQ(ShardIndex::from_json(j, "x").checksum, "none");
}

// Found by tests/fuzz/fuzz_shard_index: a float where an integer belongs (9.2e19 as image_size)
// was cast to int (undefined), and sample counts could add up past int64 (a signed overflow).
TEST(ShardIndexFields, NumbersOutOfRangeAreNamed) {
  ShardIndex idx;
  idx.shards = {{"a.h5", 3}};
  idx.total_samples = 3;
  const nlohmann::json good = idx.to_json();
  EXPECT_EQ(ShardIndex::from_json(good, "x").total_samples, 3);
  auto expect_error = [](const nlohmann::json& j, const std::string& message) {
    try {
      ShardIndex::from_json(j, "index.json");
      ADD_FAILURE() << "no error for " << j.dump();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("index.json: " + message), std::string::npos) << e.what();
    }
  };
  for (const char* key : {"image_size", "chunk_images", "context_length", "format_version"}) {
    nlohmann::json j = good;
    j[key] = 9.2e19;
    expect_error(j, std::string(key) + " must be an integer in [-2147483648, 2147483647], not 9.2e+19");
    j[key] = 4294967296;
    expect_error(j, std::string(key) + " must be an integer");
  }
  nlohmann::json j = good;
  j["shards"] = {{{"file", "a.h5"}, {"samples", INT64_MAX}}, {{"file", "b.h5"}, {"samples", 2}}};
  expect_error(j, "shard counts add up past 2^63");
  j["shards"][0]["samples"] = 1.5;
  expect_error(j, "samples must be an integer");
}

TEST(ShardTokens, IdsOutsideTheVocabularyNameShardIdAndRow) {
  TempDir dir("vocab");
  const std::string path = dir.str("shard-00000.h5");
  write_noise_shard(path, Compression::none, true);  // row i holds ids i .. i+3
  ShardReader r(path);
  std::vector<int32_t> tok(static_cast<size_t>(kRows) * kContext);
  r.read_tokens(0, kRows, tok.data());  // unchecked by default
  EXPECT_EQ(r.vocab_size(), 0);
  r.set_vocab_size(kRows + kContext - 1);  // the largest id, 14, is just inside [0, 15)
  r.read_tokens(0, kRows, tok.data());
  r.set_vocab_size(10);  // row 7 holds 7, 8, 9, 10: the first id outside [0, 10)
  r.read_tokens(0, 7, tok.data());
  const std::string msg = error_of([&] { r.read_tokens(5, 4, tok.data()); });
  EXPECT_EQ(msg, "shard " + path + ": token id 10 at row 7 is outside the vocabulary [0, 10)");
  EXPECT_THROW(r.set_vocab_size(-1), Error);
}

TEST(ShardTokens, NegativeIdsAreOutsideTheVocabulary) {
  TempDir dir("vocab-neg");
  const std::string path = dir.str("s.h5");
  ShardLayout layout;
  layout.image_size = 2;
  layout.context_length = 2;
  {
    ShardWriter w(path, layout);
    const std::vector<uint8_t> px(12, 0);
    const int32_t good[2] = {1, 2}, bad[2] = {3, -5};
    w.add(px.data(), "a", "a", good);
    w.add(px.data(), "b", "b", bad);
    w.close();
  }
  ShardReader r(path);
  r.set_vocab_size(100);
  std::vector<int32_t> tok(4);
  const std::string msg = error_of([&] { r.read_tokens(0, 2, tok.data()); });
  EXPECT_EQ(msg, "shard " + path + ": token id -5 at row 1 is outside the vocabulary [0, 100)");
}

TEST(ShardTokens, IndexVocabularySize) {
  ShardIndex idx;
  idx.image_size = 8;
  EXPECT_EQ(idx.vocab_size(), 0);  // no tokenizer: nothing to check against
  idx.tokenizer = {{"kind", "clip-bpe"}, {"vocab_size", 4096}};
  EXPECT_EQ(ShardIndex::from_json(idx.to_json(), "x").vocab_size(), 4096);
  idx.tokenizer["vocab_size"] = "4096";
  EXPECT_THROW(ShardIndex::from_json(idx.to_json(), "x"), Error);
  idx.tokenizer["vocab_size"] = 0;
  EXPECT_THROW(ShardIndex::from_json(idx.to_json(), "x"), Error);
}
