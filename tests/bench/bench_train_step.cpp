// One coca_tiny training step (forward, backward, AdamW) at batch 64: samples/s, against the
// same step of the PyTorch reference in the same run, and CPU efficiency against sgemm.
//
//   ./build/tests/bench/bench_train_step [--model coca_tiny] [--batch 64] [--steps 5] [--caption-tokens 8-30]
//                                        [--no-torch] [--profile]
//
// Captions: row b holds lo + (7b mod (hi-lo+1)) tokens (start and end included), then padding;
// the default 8-30 nearly fills coca_tiny's 32 positions, 4-24 is close to the emoji set's
// captions (mean 11.6 tokens, 99th percentile 24). The step trims the text tower and decoder to
// the batch's longest caption as coca-train does; the full-length step (all L positions, what
// OpenCLIP computes) is timed in the same run for the ratio.
//
// --profile: after the timed steps, run as many again with the CPU backend's per-kernel timing
// on (coca/kernels/cpu/profile.h) and print where the main thread's CPU time went: each kernel's
// exclusive thread CPU time per step, GEMM against the rest, and what no kernel accounts for
// (graph building, checks, shape bookkeeping). Meaningful at one thread:
//   OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 ./build/tests/bench/bench_train_step --no-torch --profile
//
// Efficiency = analytic training FLOPs per sample (3 x forward) x samples/s / the sgemm rate
// this program measures (1024^3 cblas_sgemm, all threads). Ratios are from one run.
#include <cblas.h>
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "coca/loss/coca_loss.h"
#include "coca/model/flops.h"
#include "coca/optim/adamw.h"
#include "coca/kernels/cpu/blas_select.h"
#include "coca/kernels/cpu/profile.h"

using namespace coca;
using Clock = std::chrono::steady_clock;

static double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

static double sgemm_gflops(int n) {
  std::vector<float> a(n * n), b(n * n), c(n * n);
  for (int i = 0; i < n * n; ++i) a[i] = (i % 7) * 0.1f, b[i] = (i % 5) * 0.1f;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a.data(), n, b.data(), n, 0, c.data(), n);
  const int reps = 8;
  auto t0 = Clock::now();
  for (int r = 0; r < reps; ++r)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a.data(), n, b.data(), n, 0, c.data(), n);
  return 2.0 * n * n * n * reps / seconds_since(t0) / 1e9;
}

// Runs `steps` steps with the per-kernel timing on and prints the breakdown per step.
template <typename Step>
static void profile_steps(Step&& step, int steps) {
  const double wall0 = std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
  coca::cpu::set_cpu_profiling(true);
  const double t0 = coca::cpu::thread_cpu_seconds();
  for (int s = 0; s < steps; ++s) step();
  const double total = (coca::cpu::thread_cpu_seconds() - t0) / steps;
  coca::cpu::set_cpu_profiling(false);
  const double wall = (std::chrono::duration<double>(Clock::now().time_since_epoch()).count() - wall0) / steps;
  const auto entries = coca::cpu::cpu_profile();
  double gemm = 0, kernels = 0;
  for (const auto& e : entries) {
    kernels += e.seconds / steps;
    if (e.name.rfind("gemm", 0) == 0) gemm += e.seconds / steps;
  }
  std::printf("profile over %d steps: main thread CPU %.1f ms/step (wall %.1f ms/step)\n", steps, 1e3 * total,
              1e3 * wall);
  std::printf("  %-24s %10s %7s %9s\n", "kernel", "ms/step", "share", "calls");
  for (const auto& e : entries)
    std::printf("  %-24s %10.2f %6.1f%% %9.0f\n", e.name.c_str(), 1e3 * e.seconds / steps,
                100.0 * e.seconds / steps / total, static_cast<double>(e.calls) / steps);
  std::printf("  %-24s %10.2f %6.1f%%\n", "(outside kernels)", 1e3 * (total - kernels), 100.0 * (total - kernels) / total);
  std::printf("  %-24s %10.2f %6.1f%%\n", "GEMM", 1e3 * gemm, 100.0 * gemm / total);
  std::printf("  %-24s %10.2f %6.1f%%\n", "non-GEMM", 1e3 * (total - gemm), 100.0 * (total - gemm) / total);
}

int main(int argc, char** argv) {
  coca::cpu::select_blas_kernels(argv);  // before any thread: may re-execute this program
  std::string model_name = "coca_tiny";
  int batch = 64, steps = 5, lo = 8, hi = 30;
  bool torch = true, profile = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--model" && i + 1 < argc) model_name = argv[++i];
    else if (a == "--batch" && i + 1 < argc) batch = std::atoi(argv[++i]);
    else if (a == "--steps" && i + 1 < argc) steps = std::atoi(argv[++i]);
    else if (a == "--caption-tokens" && i + 1 < argc && std::sscanf(argv[i + 1], "%d-%d", &lo, &hi) == 2) ++i;
    else if (a == "--no-torch") torch = false;
    else if (a == "--profile") profile = true;
    else {
      std::printf("usage: bench_train_step [--model NAME] [--batch N] [--steps N] [--caption-tokens LO-HI] [--no-torch]\n"
                  "                        [--profile]\n"
                  "  --caption-tokens  caption lengths in tokens, start and end included (default 8-30)\n"
                  "  --profile  also time every CPU kernel over as many steps again (one thread: OMP_NUM_THREADS=1)\n");
      return a == "--help" ? 0 : 2;
    }
  }
  const std::string cfg_path = find_model_config(model_name);
  CocaConfig cfg = CocaConfig::from_file(cfg_path);
  CoCa model(cfg);
  AdamW opt(model.named_parameters(), AdamWOptions{});
  Generator gen(1);
  const int64_t L = cfg.text.context_length, V = cfg.text.vocab_size, S = cfg.vision.image_size;
  if (lo < 2 || hi < lo || hi > L) {
    std::fprintf(stderr, "bench_train_step: --caption-tokens %d-%d must satisfy 2 <= LO <= HI <= %lld\n", lo, hi,
                 static_cast<long long>(L));
    return 2;
  }
  Tensor images = Tensor::randn({batch, 3, S, S}, gen);
  std::vector<int32_t> tok(batch * L, 0);
  for (int b = 0; b < batch; ++b) {
    const int n = lo + (b * 7) % (hi - lo + 1);
    tok[b * L] = static_cast<int32_t>(V - 2);
    for (int i = 1; i < n - 1; ++i) tok[b * L + i] = 1 + static_cast<int32_t>(gen.below(V - 3));
    tok[b * L + n - 1] = static_cast<int32_t>(V - 1);
  }
  Tensor tokens = Tensor::from_vector(tok, {batch, L});
  bool trim = true;
  auto step = [&] {
    auto l = coca_loss(model.forward(images, tokens, trim), tokens, cfg.text.pad_id);
    l.total.backward();
    opt.step(1e-4);
    opt.zero_grad();
    model.clamp_logit_scale();
  };
  auto rate = [&](bool trimmed) {
    trim = trimmed;
    step();  // warm-up
    auto t0 = Clock::now();
    for (int s = 0; s < steps; ++s) step();
    return batch * steps / seconds_since(t0);
  };
  const double ours = rate(true), full_length = rate(false);
  trim = true;
  const double sgemm = sgemm_gflops(1024);
  const double train_flops = 3.0 * forward_flops_per_sample(cfg);
  const int threads = omp_get_max_threads();
  if (profile) profile_steps(step, steps);

  double theirs = 0;
  std::string torch_version = "not run";
  if (torch) {
    const std::string script = std::string(COCA_SOURCE_DIR) + "/tests/bench/torch_train_step.py";
    const std::string cmd = "/usr/bin/python3 " + script + " " + cfg_path + " --batch " + std::to_string(batch) +
                            " --steps " + std::to_string(steps) + " --threads " + std::to_string(threads) +
                            " --caption-tokens " + std::to_string(lo) + "-" + std::to_string(hi) + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    char buf[4096];
    std::string out;
    while (p && fgets(buf, sizeof buf, p)) out += buf;
    const int st = p ? pclose(p) : -1;
    const auto pos = out.find("\"samples_per_s\": ");
    if (st == 0 && pos != std::string::npos) {
      theirs = std::atof(out.c_str() + pos + 17);
      const auto tv = out.find("\"torch\": \"");
      if (tv != std::string::npos) torch_version = out.substr(tv + 10, out.find('"', tv + 10) - tv - 10);
    } else {
      torch_version = "failed (is Debian's python3-torch installed?)";
    }
  }
  std::printf("%s training step, batch %d, %d threads, %d timed steps, captions of %d-%d tokens\n",
              model_name.c_str(), batch, threads, steps, lo, hi);
  std::printf("  %-34s %10.1f samples/s\n", "coca (C++)", ours);
  std::printf("  %-34s %10.1f samples/s (trimmed %.2fx)\n", "coca, all L text positions", full_length,
              ours / full_length);
  if (theirs > 0) {
    std::printf("  %-34s %10.1f samples/s\n", ("PyTorch " + torch_version + " reference").c_str(), theirs);
    std::printf("  %-34s %10.2fx\n", "ratio coca / PyTorch", ours / theirs);
  } else {
    std::printf("  PyTorch reference: %s\n", torch_version.c_str());
  }
  std::printf("  %-34s %10.1f GFLOP/s\n", "sgemm 1024^3 (all threads)", sgemm);
  std::printf("  %-34s %10.2f GFLOP\n", "training FLOPs/sample (3x fwd, all L)", train_flops / 1e9);
  std::printf("  %-34s %10.1f GFLOP/s = %.0f%% of sgemm\n", "coca achieved", ours * train_flops / 1e9,
              100.0 * ours * train_flops / 1e9 / sgemm);
  return 0;
}
