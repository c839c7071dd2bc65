// Loader throughput: JPEG decode + random-resized-crop + normalise, and the whole loader on
// shard format 2 (encoded JPEG) against format 1 (raw pixels). A plain timed program; run
// from the build directory:
//   ./tests/bench_data/bench_loader [--threads N] [--seconds S] [--samples N]
// Every figure is given per CPU-second (samples / CPU time of the threads doing the work,
// thread CPU clocks) and per wall second with N threads (default: all cores); on a shared,
// loaded machine the per-CPU-second figures are the robust ones.
//   (a) decode + crop + normalise to 224 px, JPEGs of 256 px (shorter side)
//   (b) the same from 512-px JPEGs
//   each also with the previous resampler and exact decode (the transform as it was), the
//   decode alone (same crops, DCT scales and flags, no resample), and the resample alone
//   (current and previous resampler, CPU time of the resample call only)
//   (c) ShardLoader end to end on a format-2 set of (a)'s JPEGs (HDF5 read, header checks,
//       decode, crop, batch of 64), augmentation as the trainer runs it (scale 0.9-1.0, bilinear)
//   (d) ShardLoader on format 1 (256 x 256 raw pixels) of the same images
//   (e) the per-sample transform at 64 and 224 px, format 2 and format 1, with and without
//       colour jitter / grayscale (one thread; --color-only runs just this)
//   --scales: only the full decode of both JPEG sets at each DCT scale libjpeg-turbo offers
//       below 1 (one thread, fast IDCT and upsampling as training crops use), to see which
//       scales are worth choosing
// and the bytes per sample of both sets. The images are synthetic but photo-like (smooth
// colour fields, hard-edged shapes, fine texture and sensor-like noise), JPEG quality 90.
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "coca/data/jpeg_decode.h"
#include "coca/data/loader.h"
#include "coca/data/resample.h"
#include "coca/data/shard.h"
#include "coca/data/shard_index.h"
#include "coca/tensor/random.h"
#include "resample_previous.h"

using namespace coca;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double process_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

// Photo-like RGB: a few low-frequency colour waves, shapes with hard edges, a fine texture
// and per-pixel noise of a few levels.
std::vector<uint8_t> photo_like(int w, int h, uint64_t seed) {
  Generator g(seed);
  double fx[3][3], fy[3][3], ph[3][3], amp[3][3];
  for (int c = 0; c < 3; ++c)
    for (int k = 0; k < 3; ++k) {
      fx[c][k] = (0.5 + 3.0 * g.uniform()) * 6.283 / w;
      fy[c][k] = (0.5 + 3.0 * g.uniform()) * 6.283 / h;
      ph[c][k] = 6.283 * g.uniform();
      amp[c][k] = 20 + 30 * g.uniform();
    }
  struct Shape {
    double cx, cy, r;
    int col[3];
    bool box;
  };
  std::vector<Shape> shapes;
  for (int s = 0; s < 6; ++s)
    shapes.push_back({w * g.uniform(), h * g.uniform(), std::min(w, h) * (0.08 + 0.25 * g.uniform()),
                      {static_cast<int>(g.below(120)) - 60, static_cast<int>(g.below(120)) - 60,
                       static_cast<int>(g.below(120)) - 60},
                      g.below(2) == 0});
  std::vector<uint8_t> px(static_cast<size_t>(w) * h * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      int add[3] = {0, 0, 0};
      for (const auto& s : shapes) {
        const bool in = s.box ? std::abs(x - s.cx) < s.r && std::abs(y - s.cy) < 0.7 * s.r
                              : std::hypot(x - s.cx, y - s.cy) < s.r;
        if (in)
          for (int c = 0; c < 3; ++c) add[c] = s.col[c];
      }
      const double texture = 6 * std::sin(0.9 * x + 0.4 * y) * std::sin(0.3 * x - 0.8 * y);
      for (int c = 0; c < 3; ++c) {
        double v = 120;
        for (int k = 0; k < 3; ++k) v += amp[c][k] * std::sin(fx[c][k] * x + fy[c][k] * y + ph[c][k]) / 2;
        v += add[c] + texture + (static_cast<double>(g.below(7)) - 3);
        px[(static_cast<size_t>(y) * w + x) * 3 + c] = static_cast<uint8_t>(std::clamp(v, 0.0, 255.0));
      }
    }
  return px;
}

struct Jpeg {
  std::vector<uint8_t> bytes;
  int w = 0, h = 0;
};

// n JPEGs with `side` px on the shorter side, aspect ratios 1:1, 4:3 and 3:4 in turn.
std::vector<Jpeg> make_jpegs(int n, int side, uint64_t seed) {
  std::vector<Jpeg> out(static_cast<size_t>(n));
  std::vector<std::thread> pool;
  std::atomic<int> next{0};
  const int threads = std::max(1u, std::thread::hardware_concurrency());
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&] {
      for (int i; (i = next.fetch_add(1)) < n;) {
        Jpeg& j = out[static_cast<size_t>(i)];
        j.w = i % 3 == 1 ? side * 4 / 3 : side;
        j.h = i % 3 == 2 ? side * 4 / 3 : side;
        const auto px = photo_like(j.w, j.h, seed + static_cast<uint64_t>(i));
        j.bytes = encode_jpeg(px.data(), j.w, j.h, 3, 90);
      }
    });
  for (auto& t : pool) t.join();
  return out;
}

struct Rate {
  double per_cpu_s = 0, per_wall_s = 0;
  int64_t samples = 0;
};

// What decode_rate runs per sample.
enum class Mode {
  transform,          // transform_encoded, as the loader runs it
  decode_only,        // the same decodes (same crops, DCT scales and flags), no resample
  previous,           // the transform as it was: exact decode, the previous resampler
  resample_only,      // only the resample is timed (the decode happens, off the clock)
  resample_previous,  // the same with the previous resampler
};

// (a), (b): `threads` threads transform the JPEGs round-robin for about `seconds`.
Rate decode_rate(const std::vector<Jpeg>& jpegs, int threads, double seconds, Mode mode) {
  std::atomic<int64_t> done{0};
  std::vector<double> cpu(static_cast<size_t>(threads), 0.0);
  const auto t0 = Clock::now();
  std::vector<std::thread> pool;
  AugmentParams p;  // the trainer's: random-resized-crop 0.9-1.0, ratio 3/4-4/3
  p.filter = ResampleFilter::bilinear;
  const bool timed_resample = mode == Mode::resample_only || mode == Mode::resample_previous;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      std::vector<float> out(3 * 224 * 224);
      double c0 = thread_cpu_seconds(), resample_cpu = 0;
      int64_t mine = 0;
      for (size_t i = static_cast<size_t>(t);; i += static_cast<size_t>(threads)) {
        const Jpeg& j = jpegs[i % jpegs.size()];
        Generator g(mix_seed(7, i));
        if (mode == Mode::transform) {
          transform_encoded(j.bytes.data(), j.bytes.size(), 224, p, g, out.data());
        } else {
          // transform_encoded's steps, spelled out (JPEG, random crop).
          const CropBox c = random_resized_crop_box(j.w, j.h, p, g);
          const bool fast = mode != Mode::previous;
          const Image img =
              decode_jpeg_scaled(j.bytes.data(), j.bytes.size(), choose_dct_scale(c.w, c.h, 224, 224), fast);
          if (mode == Mode::decode_only) {
            out[0] = img.rgb[0];
          } else {
            const double fx = static_cast<double>(img.width) / j.w, fy = static_cast<double>(img.height) / j.h;
            SourceBox box{c.x * fx, c.y * fy, c.w * fx, c.h * fy};
            box.w = std::min(box.w, img.width - box.x0);
            box.h = std::min(box.h, img.height - box.y0);
            const RgbView v{img.rgb.data(), img.width, img.height, static_cast<int64_t>(img.width) * 3};
            const double r0 = timed_resample ? thread_cpu_seconds() : 0;
            if (mode == Mode::resample_only)
              resample_rgb_normalized(v, box, 224, 224, p.filter, kClipMean, kClipStd, out.data());
            else
              previous::resample_rgb_normalized(v, box, 224, 224, p.filter, kClipMean, kClipStd, out.data());
            if (timed_resample) resample_cpu += thread_cpu_seconds() - r0;
          }
        }
        ++mine;
        if (mine % 16 == 0 && std::chrono::duration<double>(Clock::now() - t0).count() > seconds) break;
      }
      cpu[static_cast<size_t>(t)] = timed_resample ? resample_cpu : thread_cpu_seconds() - c0;
      done += mine;
    });
  for (auto& t : pool) t.join();
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  double cpu_total = 0;
  for (double c : cpu) cpu_total += c;
  return {static_cast<double>(done) / cpu_total, static_cast<double>(done) / wall, done.load()};
}

// The rows for one JPEG set.
Rate transform_rows(const char* label, const std::vector<Jpeg>& jpegs, int threads, double seconds) {
  const Rate a = decode_rate(jpegs, threads, seconds, Mode::transform);
  std::printf("%s decode+crop+normalise -> 224: %8.0f samples/CPU-s  %8.0f samples/s wall (%lld)\n", label,
              a.per_cpu_s, a.per_wall_s, static_cast<long long>(a.samples));
  const Rate prev = decode_rate(jpegs, threads, seconds, Mode::previous);
  std::printf("    previous resampler, exact decode:  %8.0f samples/CPU-s  %8.0f samples/s wall  (%.2fx)\n",
              prev.per_cpu_s, prev.per_wall_s, a.per_cpu_s / prev.per_cpu_s);
  const Rate d = decode_rate(jpegs, threads, seconds, Mode::decode_only);
  std::printf("    of which the decode alone:         %8.0f samples/CPU-s\n", d.per_cpu_s);
  const Rate r = decode_rate(jpegs, threads, seconds, Mode::resample_only);
  const Rate rp = decode_rate(jpegs, threads, seconds, Mode::resample_previous);
  std::printf("    the resample alone:                %8.0f samples/CPU-s  (%.0f us; previous %.0f/CPU-s, %.0f us)\n",
              r.per_cpu_s, 1e6 / r.per_cpu_s, rp.per_cpu_s, 1e6 / rp.per_cpu_s);
  return a;
}

// (e): samples per CPU-second of the loader's per-sample transform at out x out px with the
// colour augmentation `color`: transform_encoded on the JPEGs (format 2), or transform_sample
// on their 256 x 256 pixels (format 1). One thread, thread CPU clock.
double color_rate(const std::vector<Jpeg>& jpegs, const std::vector<Image>& raws, bool encoded, int out,
                  const ColorAugmentParams& color, double seconds) {
  AugmentParams p;  // the trainer's crop: 0.9-1.0, ratio 3/4-4/3, bilinear
  p.filter = ResampleFilter::bilinear;
  p.color = color;
  std::vector<float> dst(3 * static_cast<size_t>(out) * out);
  auto one = [&](size_t i) {
    Generator g(mix_seed(7, i));
    if (encoded) {
      const Jpeg& j = jpegs[i % jpegs.size()];
      transform_encoded(j.bytes.data(), j.bytes.size(), out, p, g, dst.data());
    } else {
      const Image& r = raws[i % raws.size()];
      transform_sample({r.rgb.data(), r.width, r.height, static_cast<int64_t>(r.width) * 3}, out, p, g, dst.data());
    }
  };
  for (size_t i = 0; i < 32; ++i) one(i);  // warm-up: the per-thread buffers, the decompressor
  const double c0 = thread_cpu_seconds();
  int64_t done = 0;
  for (size_t i = 0;; ++i) {
    one(i);
    ++done;
    if (done % 16 == 0 && thread_cpu_seconds() - c0 > seconds) break;
  }
  return static_cast<double>(done) / (thread_cpu_seconds() - c0);
}

void color_rows(const std::vector<Jpeg>& jpegs, double seconds) {
  std::vector<Image> raws;
  for (const Jpeg& j : jpegs) raws.push_back(resize_shorter_center_crop(decode_image(j.bytes), 256));
  struct Setting {
    const char* name;
    ColorAugmentParams color;
  };
  const Setting settings[] = {
      {"off", {}},
      {"jitter (0.4,0.4,0.4,0.1) p=1", {0.4, 0.4, 0.4, 0.1, 1.0, 0.0}},
      {"jitter p=0.8 + gray p=0.2", {0.4, 0.4, 0.4, 0.1, 0.8, 0.2}},
      {"gray p=1", {0, 0, 0, 0, 0.0, 1.0}},
  };
  for (const bool encoded : {true, false})
    for (const int out : {64, 224}) {
      double base = 0;
      for (const Setting& st : settings) {
        const double r = color_rate(jpegs, raws, encoded, out, st.color, seconds);
        if (base == 0) base = r;
        std::printf("(e) %s -> %3d px, colour %-30s %8.0f samples/CPU-s  %7.1f us/sample  cost %.2fx\n",
                    encoded ? "format 2 (jpeg)   " : "format 1 (raw 256)", out, st.name, r, 1e6 / r, base / r);
      }
    }
}

// --scales: microseconds per whole-image decode of `jpegs` at n/8, n = 8..1, one thread.
void scale_rows(const char* label, const std::vector<Jpeg>& jpegs, double seconds) {
  for (int n = 8; n >= 1; --n) {
    const int g = std::gcd(n, 8);
    const DctScale s{n / g, 8 / g};
    auto decode = [&](size_t i) {
      const Jpeg& j = jpegs[i % jpegs.size()];
      decode_jpeg_scaled(j.bytes.data(), j.bytes.size(), s, true);
    };
    for (size_t i = 0; i < 8; ++i) decode(i);  // warm-up: the decompressor, the page cache
    const double c0 = thread_cpu_seconds();
    int64_t done = 0;
    for (size_t i = 0;; ++i) {
      decode(i);
      ++done;
      if (done % 16 == 0 && thread_cpu_seconds() - c0 > seconds) break;
    }
    std::printf("%s decode at %d/%d: %7.0f us\n", label, s.num, s.denom, 1e6 * (thread_cpu_seconds() - c0) / done);
  }
}

// A shard set of the JPEGs: format 2 stores them, format 1 their decoded pixels
// (shorter side 256, centre crop, as coca-shard --image-format raw makes them).
int64_t write_set(const std::string& dir, const std::vector<Jpeg>& jpegs, bool encoded) {
  fs::remove_all(dir);
  fs::create_directories(dir);
  ShardIndex index;
  index.format_version = encoded ? kShardFormatVersionEncoded : kShardFormatVersion;
  index.image_format = encoded ? "jpeg" : "raw";
  index.image_size = encoded ? 512 : 256;
  index.chunk_images = 16;
  const size_t per_shard = 256;
  for (size_t start = 0; start < jpegs.size(); start += per_shard) {
    ShardLayout layout;
    layout.image_format = encoded ? ShardImageFormat::jpeg : ShardImageFormat::raw;
    layout.image_size = index.image_size;
    const std::string name = shard_file_name(static_cast<int64_t>(index.shards.size()));
    ShardWriter w((fs::path(dir) / name).string(), layout);
    const size_t end = std::min(jpegs.size(), start + per_shard);
    for (size_t i = start; i < end; ++i) {
      const Jpeg& j = jpegs[i];
      const std::string caption = "a photo of thing " + std::to_string(i);
      if (encoded) {
        w.add_encoded(j.bytes.data(), j.bytes.size(), j.w, j.h, caption, std::to_string(i));
      } else {
        const Image px = resize_shorter_center_crop(decode_image(j.bytes), 256);
        w.add(px.rgb.data(), caption, std::to_string(i));
      }
    }
    w.close();
    index.shards.push_back({name, static_cast<int64_t>(end - start)});
    index.total_samples += static_cast<int64_t>(end - start);
  }
  index.save(dir);
  int64_t bytes = 0;
  for (size_t s = 0; s < index.shards.size(); ++s) bytes += static_cast<int64_t>(fs::file_size(index.shard_path(dir, s)));
  return bytes;
}

// (c), (d): whole epochs of the loader for about `seconds`; CPU time of the whole process.
Rate loader_rate(const std::string& dir, int threads, double seconds) {
  LoaderOptions o;
  o.dir = dir;
  o.image_size = 224;
  o.batch_size = 64;
  o.threads = threads;
  o.shuffle_buffer = 256;
  ShardLoader loader(o);
  Batch b;
  int64_t samples = 0;
  const double c0 = process_cpu_seconds();
  const auto t0 = Clock::now();
  for (int64_t epoch = 0; std::chrono::duration<double>(Clock::now() - t0).count() < seconds; ++epoch) {
    loader.start_epoch(epoch);
    while (loader.next(b)) samples += b.images.size(0);
  }
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  return {static_cast<double>(samples) / (process_cpu_seconds() - c0), static_cast<double>(samples) / wall, samples};
}

}  // namespace

int main(int argc, char** argv) {
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  double seconds = 4;
  int n = 512;
  bool color_only = false, scales_only = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::printf(
          "bench_loader: JPEG decode + crop and loader throughput, shard format 2 vs 1\n"
          "  --threads N   worker threads (default: all cores, %d here)\n"
          "  --seconds S   time per measurement (4)\n"
          "  --samples N   JPEGs per set (512)\n"
          "  --color-only  only (e): the per-sample transform at 64 and 224 px with and without colour\n"
          "                jitter / grayscale (one thread)\n"
          "  --scales      only the whole-image decode at each DCT scale n/8 (one thread)\n",
          threads);
      return 0;
    }
    if (a == "--color-only") {
      color_only = true;
      continue;
    }
    if (a == "--scales") {
      scales_only = true;
      continue;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "bench_loader: %s needs a value (see --help)\n", a.c_str());
      return 2;
    }
    if (a == "--threads") threads = std::atoi(argv[++i]);
    else if (a == "--seconds") seconds = std::atof(argv[++i]);
    else if (a == "--samples") n = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "bench_loader: unknown option %s (see --help)\n", a.c_str());
      return 2;
    }
  }
  if (threads < 1 || seconds <= 0 || n < 1) {
    std::fprintf(stderr, "bench_loader: --threads, --seconds and --samples must be positive\n");
    return 2;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // each figure as it is measured, also into a file
  try {
    std::printf("threads %d, %.1f s per measurement, %d JPEGs per set (quality 90)\n", threads, seconds, n);
    const auto j256 = make_jpegs(n, 256, 1000);
    const auto j512 = make_jpegs(std::max(1, n / 2), 512, 5000);
    auto mean_kb = [](const std::vector<Jpeg>& v) {
      double s = 0;
      for (const auto& j : v) s += static_cast<double>(j.bytes.size());
      return s / static_cast<double>(v.size()) / 1024;
    };
    std::printf("JPEG sizes: 256 px %.1f KB, 512 px %.1f KB on average\n", mean_kb(j256), mean_kb(j512));
    if (color_only) {
      color_rows(j256, seconds);
      return 0;
    }
    if (scales_only) {
      scale_rows("256px", j256, seconds);
      scale_rows("512px", j512, seconds);
      return 0;
    }
    const Rate a = transform_rows("(a) 256px", j256, threads, seconds);
    transform_rows("(b) 512px", j512, threads, seconds);
    const std::string base = (fs::temp_directory_path() / ("coca-bench-loader-" + std::to_string(::getpid()))).string();
    const int64_t v2_bytes = write_set(base + "/v2", j256, true);
    const int64_t v1_bytes = write_set(base + "/v1", j256, false);
    const Rate c = loader_rate(base + "/v2", threads, seconds);
    std::printf("(c) loader, format 2 (jpeg):            %8.0f samples/CPU-s  %8.0f samples/s wall (%lld)  = %.0f%% of (a)\n",
                c.per_cpu_s, c.per_wall_s, static_cast<long long>(c.samples), 100 * c.per_cpu_s / a.per_cpu_s);
    const Rate d = loader_rate(base + "/v1", threads, seconds);
    std::printf("(d) loader, format 1 (raw 256px):       %8.0f samples/CPU-s  %8.0f samples/s wall (%lld)\n",
                d.per_cpu_s, d.per_wall_s, static_cast<long long>(d.samples));
    std::printf("storage per sample: format 1 %.1f KB, format 2 %.1f KB (%.1fx smaller)\n",
                static_cast<double>(v1_bytes) / n / 1024, static_cast<double>(v2_bytes) / n / 1024,
                static_cast<double>(v1_bytes) / static_cast<double>(v2_bytes));
    std::printf("cores to feed 3,400 samples/s with format 2: %.1f\n", 3400.0 / c.per_cpu_s);
    color_rows(j256, seconds);
    fs::remove_all(base);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_loader: %s\n", e.what());
    return 1;
  }
  return 0;
}
