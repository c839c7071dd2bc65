// A shard set's index.json through ShardIndex::load, then what the loader plans from it alone:
// the epoch's batch count and each rank's sample stream (sample_stream.h), with some chunk
// reads failing so that shards are skipped.
#include <algorithm>
#include <fstream>

#include "coca/data/sample_stream.h"
#include "coca/data/shard_index.h"
#include "fuzz_common.h"

using namespace coca;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string dir = fuzz::scratch_dir().string();
  {
    std::ofstream f(dir + "/index.json", std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  ShardIndex index;
  if (!fuzz::expect_errors([&] { index = ShardIndex::load(dir); })) return 0;
  fuzz::expect_errors([&] { (void)index.vocab_size(); });
  for (size_t i = 0; i < index.shards.size(); ++i) (void)index.shard_path(dir, i);
  // What it writes, it reads back the same.
  const ShardIndex again = ShardIndex::from_json(index.to_json(), "round trip");
  FUZZ_ASSERT(again.to_json() == index.to_json());

  // The stream holds a bit per sample and a chunk list per shard, by design: plan only sets of
  // a size that a test machine holds.
  if (index.total_samples > (int64_t{1} << 14) || index.shards.size() > 1024) return 0;
  const uint8_t knobs = size ? data[size - 1] : 0;
  StreamConfig cfg;
  cfg.seed = knobs;
  cfg.world = 1 + knobs % 3;
  cfg.rank = (knobs >> 2) % cfg.world;
  cfg.batch_size = 1 + (knobs >> 4) % 5;
  cfg.shuffle_buffer = (knobs & 8) ? 0 : 7;
  cfg.chunk_rows = index.chunk_images > 0 ? std::min(index.chunk_images, 1 << 16) : 16;
  cfg.resampled = knobs & 64;
  cfg.epoch_samples = cfg.resampled ? 40 : 0;
  fuzz::expect_errors([&] {
    const int64_t batches = batches_per_epoch(index, cfg, 1);
    FUZZ_ASSERT(batches >= 0);
    SampleStream stream(index, cfg, 1);
    FUZZ_ASSERT(stream.target() == batches * cfg.batch_size);
    int64_t reads = 0, emitted = 0;
    SampleRef ref;
    auto read = [&](const SampleStream::ChunkRead& c) {
      FUZZ_ASSERT(c.shard >= 0 && static_cast<size_t>(c.shard) < index.shards.size());
      FUZZ_ASSERT(c.start >= 0 && c.count > 0 && c.start + c.count <= index.shards[c.shard].samples);
      return ++reads % 5 != 0;  // every fifth chunk read fails: its shard is skipped
    };
    while (emitted < 2000 && stream.next(ref, read)) {
      FUZZ_ASSERT(ref.shard >= 0 && static_cast<size_t>(ref.shard) < index.shards.size());
      FUZZ_ASSERT(ref.row >= 0 && ref.row < index.shards[ref.shard].samples);
      ++emitted;
    }
  });
  return 0;
}
