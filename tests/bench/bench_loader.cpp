// Loader and coca-shard throughput (Google Benchmark). Run from the build directory:
//   ./tests/bench_data/bench_loader [--benchmark_filter=...]
// Reports samples/s per rank (items_per_second):
//   RawRead/S            sequential chunk reads of every shard, no decoding: the ceiling
//   Loader/S/H/augment/threads/bicubic   the full loader (reader thread + worker threads), one rank
//   ShardBuild/threads   coca-shard's decode + resize + write path on 500x375 JPEGs
// Targets: >= 2,000 samples/s per worker core at 224 with augmentation; without
// augmentation >= 50% of RawRead.
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "coca/data/loader.h"
#include "coca/data/shard.h"
#include "coca/data/shard_build.h"
#include "coca/data/shard_index.h"
#include "coca/tensor/random.h"

using namespace coca;
namespace fs = std::filesystem;

namespace {

// CPU seconds of the whole process (all threads): samples per CPU-second is the per-core
// rate even when other work shares the machine.
double process_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + 1e-6 * (u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

// A shard set of noise-textured images, made once per image size for the whole run.
const std::string& shard_set(int size) {
  static std::map<int, std::string> made;
  auto it = made.find(size);
  if (it != made.end()) return it->second;
  const std::string dir = (fs::temp_directory_path() / ("coca-bench-shards-" + std::to_string(size))).string();
  const int64_t total = size >= 256 ? 1024 : 8192;
  const int64_t per_shard = total / 8;
  if (!fs::exists(fs::path(dir) / "index.json")) {
    fs::create_directories(dir);
    ShardIndex index;
    index.image_size = size;
    index.chunk_images = 16;
    index.context_length = 32;
    Generator g(1);
    std::vector<uint8_t> px(static_cast<size_t>(size) * size * 3);
    std::vector<int32_t> tok(32, 7);
    for (int s = 0; s < 8; ++s) {
      ShardLayout layout;
      layout.image_size = size;
      layout.chunk_images = 16;
      layout.context_length = 32;
      ShardWriter w((fs::path(dir) / shard_file_name(s)).string(), layout);
      for (int64_t i = 0; i < per_shard; ++i) {
        for (auto& p : px) p = static_cast<uint8_t>(g.next_u64());
        w.add(px.data(), "a caption", "k" + std::to_string(i), tok.data());
      }
      w.close();
      index.shards.push_back({shard_file_name(s), per_shard});
      index.total_samples += per_shard;
    }
    index.save(dir);
  }
  return made[size] = dir;
}

void RawRead(benchmark::State& state) {
  const int size = static_cast<int>(state.range(0));
  const std::string& dir = shard_set(size);
  const ShardIndex index = ShardIndex::load(dir);
  std::vector<uint8_t> buf(static_cast<size_t>(16) * size * size * 3);
  int64_t samples = 0;
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) {
    for (size_t s = 0; s < index.shards.size(); ++s) {
      ShardReader r(index.shard_path(dir, s));
      for (int64_t start = 0; start < r.size(); start += 16) {
        const int64_t n = std::min<int64_t>(16, r.size() - start);
        r.read_images(start, n, buf.data());
        samples += n;
      }
    }
    benchmark::DoNotOptimize(buf.data());
  }
  state.SetItemsProcessed(samples);
  state.SetBytesProcessed(samples * size * size * 3);
  state.counters["per_cpu_s"] = static_cast<double>(samples) / (process_cpu_seconds() - cpu0);
}

void Loader(benchmark::State& state) {
  const int size = static_cast<int>(state.range(0));
  LoaderOptions o;
  o.dir = shard_set(size);
  o.image_size = static_cast<int>(state.range(1));
  o.augment = state.range(2) != 0;
  o.filter = state.range(4) ? ResampleFilter::bicubic : ResampleFilter::bilinear;
  o.threads = static_cast<int>(state.range(3));
  o.batch_size = 64;
  o.shuffle_buffer = 256;
  o.prefetch = 2;
  ShardLoader loader(o);
  int64_t samples = 0, epoch = 0;
  Batch b;
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) {
    loader.start_epoch(epoch++);
    while (loader.next(b)) samples += b.images.size(0);
  }
  state.SetItemsProcessed(samples);
  state.counters["per_cpu_s"] = static_cast<double>(samples) / (process_cpu_seconds() - cpu0);
  state.counters["per_worker"] =
      benchmark::Counter(static_cast<double>(samples) / o.threads, benchmark::Counter::kIsRate);
}

void ShardBuild(benchmark::State& state) {
  const std::string dir = (fs::temp_directory_path() / "coca-bench-build").string();
  fs::create_directories(dir + "/imgs");
  std::vector<WorkItem> items;
  Generator g(2);
  std::vector<uint8_t> px(500 * 375 * 3);
  for (int i = 0; i < 64; ++i) {
    const std::string p = dir + "/imgs/" + std::to_string(i) + ".jpg";
    if (!fs::exists(p)) {
      for (size_t k = 0; k < px.size(); ++k) px[k] = static_cast<uint8_t>((k / 3 % 500) / 2 + g.below(40));
      const auto jpg = encode_jpeg(px.data(), 500, 375, 3, 90);
      std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(jpg.data()), static_cast<std::streamsize>(jpg.size()));
    }
    WorkItem it;
    it.key = p;
    it.image.path = p;
    it.captions = {"a noisy gradient"};
    items.push_back(it);
  }
  BuildOptions bo;
  bo.out_dir = dir + "/out";
  bo.layout.image_size = 256;
  bo.threads = static_cast<int>(state.range(0));
  bo.progress = false;
  int64_t n = 0;
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) {
    SkipReport rep;
    const LocalShards out = build_shards(items, bo, rep);
    for (const auto& p : out.temp_paths) fs::remove(p);
    n += static_cast<int64_t>(items.size());
  }
  state.SetItemsProcessed(n);
  state.counters["per_cpu_s"] = static_cast<double>(n) / (process_cpu_seconds() - cpu0);
}

}  // namespace

BENCHMARK(RawRead)->Arg(256)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();
// {S, H, augment, worker threads, bicubic}
BENCHMARK(Loader)
    ->Args({256, 224, 1, 1, 0})
    ->Args({256, 224, 1, 2, 0})
    ->Args({256, 224, 1, 1, 1})
    ->Args({256, 256, 0, 1, 0})
    ->Args({64, 64, 1, 1, 0})
    ->Args({64, 64, 0, 1, 0})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(ShardBuild)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_MAIN();
