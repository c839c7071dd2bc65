// coca-sysinfo: names the machine a result was measured on. Prints the CPU model, the cores
// online, the OpenBLAS kernels in use and a quick one-thread sgemm rate (GFLOP/s per core), one
// "key: value" per line so that scripts (launch/quickstart.sh) can read it.
#include <cblas.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "coca/kernels/cpu/blas_select.h"

extern "C" void openblas_set_num_threads(int);

namespace {

using Clock = std::chrono::steady_clock;

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    const auto colon = line.find(':');
    if (colon == std::string::npos) break;
    std::string v = line.substr(colon + 1);
    v.erase(0, v.find_first_not_of(" \t"));
    return v;
  }
  return "unknown CPU";
}

// Best of `trials` timings of n^3 single-thread sgemms, each trial running for at least
// `trial_s` seconds; GFLOP/s.
double sgemm_rate(int n, double trial_s, int trials) {
  std::vector<float> a(static_cast<size_t>(n) * n), b(a.size()), c(a.size());
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i % 7) * 0.1f, b[i] = static_cast<float>(i % 5) * 0.1f;
  auto gemm = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
  };
  gemm();  // warm-up: page faults, OpenBLAS buffers
  double best = 0;
  for (int t = 0; t < trials; ++t) {
    int reps = 0;
    const auto t0 = Clock::now();
    double el = 0;
    do {
      gemm();
      ++reps;
      el = std::chrono::duration<double>(Clock::now() - t0).count();
    } while (el < trial_s);
    best = std::max(best, 2.0 * n * n * n * reps / el / 1e9);
  }
  return best;
}

void usage(std::FILE* f) {
  std::fprintf(f,
               "usage: coca-sysinfo [--size N] [--seconds S]\n"
               "Prints the CPU model, the cores online, the OpenBLAS kernels and a one-thread sgemm rate:\n"
               "  cpu_model: ...\n  cores_online: N\n  blas_core: ...\n  sgemm_gflops_per_core: X\n"
               "options:\n"
               "  --size N      square sgemm size of the probe (default 512)\n"
               "  --seconds S   probe time, split over 3 trials whose best counts (default 0.6; at most 5)\n");
}

}  // namespace

int main(int argc, char** argv) {
  coca::cpu::select_blas_kernels(argv);  // the kernels training uses; may re-execute this program
  int n = 512;
  double seconds = 0.6;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      usage(stdout);
      return 0;
    }
    if ((a == "--size" || a == "--seconds") && i + 1 < argc) {
      char* end = nullptr;
      const double v = std::strtod(argv[++i], &end);
      const bool ok = end && *end == '\0' && (a == "--size" ? (v >= 16 && v <= 4096) : (v > 0 && v <= 5));
      if (!ok) {
        std::fprintf(stderr, "coca-sysinfo: %s %s is out of range (--size 16..4096, --seconds (0, 5])\n", a.c_str(),
                     argv[i]);
        return 2;
      }
      if (a == "--size") n = static_cast<int>(v);
      else seconds = v;
      continue;
    }
    std::fprintf(stderr, "coca-sysinfo: unknown argument '%s'\n", a.c_str());
    usage(stderr);
    return 2;
  }
  openblas_set_num_threads(1);
  const long cores = sysconf(_SC_NPROCESSORS_ONLN);
  std::printf("cpu_model: %s\n", cpu_model().c_str());
  std::printf("cores_online: %ld\n", cores);
  std::printf("blas_core: %s\n", coca::cpu::blas_core_name().c_str());
  std::printf("sgemm_gflops_per_core: %.1f\n", sgemm_rate(n, seconds / 3, 3));
  return 0;
}
