// bench_ops: throughput of the CPU kernels that dominate a CoCa step.
//
// Run (Release build; the machine otherwise idle):
//   ./build/tests/bench/bench_ops --benchmark_min_time=0.5
//   ./build/tests/bench/bench_ops --benchmark_filter=matmul --benchmark_min_time=0.5 \
//       --benchmark_repetitions=5 --benchmark_enable_random_interleaving=true
//
// What it measures (wall-clock time: every benchmark uses UseRealTime because BLAS is threaded):
//   matmul/ours/MxNxK    coca::matmul, float32 (allocates its output, as the model does)
//   matmul/sgemm/MxNxK   raw cblas_sgemm on preallocated buffers: the ceiling for ours
//   matmul/*_bt/...      the same with B given transposed ([N, K] storage, as linear's W^T)
//   attention/...        scaled_dot_product_attention forward + backward, FLOP/s counting the
//                        GEMM work the fused kernel really does: 2 GEMMs forward, 5 backward
//                        (scores are recomputed), 2*T*S*D flops each, per (batch, head)
//   layer_norm/...       layer_norm forward + backward through autograd; bytes/s counts the
//                        minimum traffic: x, y forward; x, dy, dx backward (5 * R * C floats)
//   mlp/...              nn::Mlp (c_fc, GELU, c_proj) forward + backward at a coca_tiny image
//                        tower shape; FLOP/s counts the 6 GEMMs (2 * R * W * H each)
//   cross_entropy/...    cross_entropy forward + backward over caption-sized logits [N, V]
//   adamw/...            one AdamW step over 4M float32 parameters (bytes/s: 7 floats each,
//                        p, m, v, g read and p, m, v written)
//
// Before/after comparisons of a kernel change: build this file against both trees and run the
// two binaries alternately with the same --benchmark_filter (ratios in the same time window).
//
// At the end a table pairs each ours/sgemm shape. "ratio" = ours GFLOP/s / sgemm GFLOP/s from
// the medians over repetitions (over the single run without --benchmark_repetitions), "best"
// the same from the fastest repetition of each (robust on a shared machine). 1.00 means no
// overhead; the requirement is ratio >= 0.95 from 512^3 up. Small shapes show the fixed cost of
// an op call (checks, output allocation), which is why they are listed but not held to it.
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "coca/autograd/ops.h"
#include "coca/nn/layers.h"
#include "coca/optim/adamw.h"
#include "coca/kernels/cpu/blas_select.h"

using namespace coca;

namespace {

struct GemmShape {
  int64_t M, N, K;
  const char* what;
};

// Square sizes, then the shapes of a ViT-B/BERT-base layer at batch*tokens = 2048 rows.
const std::vector<GemmShape> kShapes = {
    {128, 128, 128, "square"},    {256, 256, 256, "square"},     {512, 512, 512, "square"},
    {1024, 1024, 1024, "square"}, {2048, 2048, 2048, "square"},  {2048, 2304, 768, "qkv proj"},
    {2048, 3072, 768, "mlp up"},  {2048, 768, 3072, "mlp down"},
};

std::string shape_name(const GemmShape& s) {
  return std::to_string(s.M) + "x" + std::to_string(s.N) + "x" + std::to_string(s.K);
}

// Shown as e.g. "123.4G/s" (FLOP per second, powers of 1000).
void set_flops(benchmark::State& st, double flops_per_iter) {
  st.counters["FLOP/s"] = benchmark::Counter(flops_per_iter, benchmark::Counter::kIsIterationInvariantRate,
                                             benchmark::Counter::OneK::kIs1000);
}

void bench_ours(benchmark::State& st, GemmShape s, bool b_transposed) {
  Generator gen(1);
  Tensor a = Tensor::randn({s.M, s.K}, gen);
  // b_transposed: storage [N, K], used as its [K, N] transpose view (no copy is made).
  Tensor b = b_transposed ? Tensor::randn({s.N, s.K}, gen).t() : Tensor::randn({s.K, s.N}, gen);
  for (auto _ : st) {
    Tensor c = matmul(a, b);
    benchmark::DoNotOptimize(c.raw_data());
  }
  set_flops(st, 2.0 * s.M * s.N * s.K);
}

void bench_sgemm(benchmark::State& st, GemmShape s, bool b_transposed) {
  Generator gen(1);
  Tensor a = Tensor::randn({s.M, s.K}, gen);
  Tensor b = b_transposed ? Tensor::randn({s.N, s.K}, gen) : Tensor::randn({s.K, s.N}, gen);
  std::vector<float> c(static_cast<size_t>(s.M * s.N));
  const int ldb = static_cast<int>(b_transposed ? s.K : s.N);
  for (auto _ : st) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, b_transposed ? CblasTrans : CblasNoTrans, s.M, s.N, s.K, 1.0f,
                a.data<float>(), s.K, b.data<float>(), ldb, 0.0f, c.data(), s.N);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  set_flops(st, 2.0 * s.M * s.N * s.K);
}

// q, k, v [B, H, T, D] as views of one [B, T, 3, H, D] projection, the layout the model makes.
void bench_attention(benchmark::State& st, int64_t B, int64_t H, int64_t T, int64_t D, bool causal) {
  Generator gen(2);
  Tensor qkv = Tensor::randn({B, T, 3, H, D}, gen).set_requires_grad(true);
  Tensor dout = Tensor::randn({B, H, T, D}, gen);
  AttentionMask mask;
  mask.causal = causal;
  for (auto _ : st) {
    qkv.zero_grad();
    // The views are part of the graph, which backward frees: make them every iteration.
    Tensor q = qkv.select(2, 0).transpose(1, 2), k = qkv.select(2, 1).transpose(1, 2),
           v = qkv.select(2, 2).transpose(1, 2);
    Tensor o = scaled_dot_product_attention(q, k, v, mask);
    o.backward(dout);
    benchmark::DoNotOptimize(qkv.grad().raw_data());
  }
  set_flops(st, 7.0 * 2.0 * B * H * T * T * D);
}

void bench_layer_norm(benchmark::State& st, int64_t R, int64_t C) {
  Generator gen(3);
  Tensor x = Tensor::randn({R, C}, gen).set_requires_grad(true);
  Tensor w = Tensor::randn({C}, gen).set_requires_grad(true);
  Tensor b = Tensor::randn({C}, gen).set_requires_grad(true);
  Tensor dy = Tensor::randn({R, C}, gen);
  for (auto _ : st) {
    x.zero_grad();
    w.zero_grad();
    b.zero_grad();
    Tensor y = layer_norm(x, w, b);
    y.backward(dy);
    benchmark::DoNotOptimize(x.grad().raw_data());
  }
  st.counters["bytes/s"] = benchmark::Counter(5.0 * R * C * sizeof(float), benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::OneK::kIs1000);
}

void bench_mlp(benchmark::State& st, int64_t R, int64_t W, int64_t H) {
  Generator gen(4);
  nn::Mlp mlp(W, H, DType::f32);
  for (auto& [name, p] : mlp.named_parameters()) p.detach().copy_(mul_scalar(Tensor::randn(p.shape(), gen), 0.05));
  Tensor x = Tensor::randn({R, W}, gen).set_requires_grad(true);
  Tensor dy = Tensor::randn({R, W}, gen);
  for (auto _ : st) {
    x.zero_grad();
    mlp.zero_grad();
    Tensor y = mlp.forward(x);
    y.backward(dy);
    benchmark::DoNotOptimize(x.grad().raw_data());
  }
  set_flops(st, 6.0 * 2.0 * R * W * H);
}

void bench_cross_entropy(benchmark::State& st, int64_t N, int64_t V) {
  Generator gen(5);
  Tensor logits = Tensor::randn({N, V}, gen).set_requires_grad(true);
  std::vector<int32_t> t(N);
  for (int64_t i = 0; i < N; ++i) t[i] = static_cast<int32_t>(gen.below(V));
  Tensor targets = Tensor::from_vector(t, {N});
  for (auto _ : st) {
    logits.zero_grad();
    Tensor l = cross_entropy(logits, targets);
    l.backward();
    benchmark::DoNotOptimize(logits.grad().raw_data());
  }
  st.counters["bytes/s"] = benchmark::Counter(3.0 * N * V * sizeof(float), benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::OneK::kIs1000);
}

void bench_adamw(benchmark::State& st, int64_t n) {
  Generator gen(6);
  std::vector<std::pair<std::string, Tensor>> params;
  for (int i = 0; i < 4; ++i) {
    Tensor p = Tensor::randn({n / 4 / 256, 256}, gen).set_requires_grad(true);
    sum(p).backward();  // a gradient of ones
    params.emplace_back("w" + std::to_string(i), p);
  }
  AdamW opt(params, AdamWOptions{});
  for (auto _ : st) opt.step(1e-4);
  st.counters["bytes/s"] = benchmark::Counter(7.0 * n * sizeof(float), benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::OneK::kIs1000);
}

void register_all() {
  for (bool bt : {false, true}) {
    for (const GemmShape& s : kShapes) {
      if (bt && std::string(s.what) == "square" && s.M < 512) continue;
      const std::string suffix = std::string(bt ? "_bt/" : "/") + shape_name(s);
      benchmark::RegisterBenchmark(("matmul/ours" + suffix).c_str(), bench_ours, s, bt)->UseRealTime();
      benchmark::RegisterBenchmark(("matmul/sgemm" + suffix).c_str(), bench_sgemm, s, bt)->UseRealTime();
    }
  }
  // B, H, T, D: a ViT-B/16 image tower row and a text-decoder row (causal).
  benchmark::RegisterBenchmark("attention/fwd_bwd/B4_H12_T197_D64", bench_attention, 4, 12, 197, 64, false)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("attention/fwd_bwd_causal/B4_H12_T77_D64", bench_attention, 4, 12, 77, 64, true)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("layer_norm/fwd_bwd/R2048_C768", bench_layer_norm, 2048, 768)
      ->UseRealTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("layer_norm/fwd_bwd/R8192_C512", bench_layer_norm, 8192, 512)
      ->UseRealTime()
      ->Unit(benchmark::kMicrosecond);
  // coca_tiny shapes: the image tower's MLP (64 x 65 tokens), the caption logits (64 x 31).
  benchmark::RegisterBenchmark("mlp/fwd_bwd/R4160_W256_H1024", bench_mlp, 4160, 256, 1024)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("cross_entropy/fwd_bwd/N1984_V4096", bench_cross_entropy, 1984, 4096)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("adamw/step/P4M", bench_adamw, int64_t{1} << 22)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
}

// Console output as usual, plus the FLOP/s of every matmul run kept for the ratio table.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      if (r.error_occurred) continue;
      auto it = r.counters.find("FLOP/s");
      if (it == r.counters.end()) continue;
      // Every repetition is kept; with --benchmark_report_aggregates_only only the medians come.
      if (r.run_type == Run::RT_Iteration) gflops_[r.run_name.function_name].push_back(it->second.value * 1e-9);
      else if (r.aggregate_name == "median") medians_[r.run_name.function_name].push_back(it->second.value * 1e-9);
    }
  }
  void PrintRatios() const {
    const auto& gflops = gflops_.empty() ? medians_ : gflops_;
    std::printf("\n%-22s %11s %11s %7s %7s\n", "matmul (MxNxK)", "ours GF/s", "sgemm GF/s", "ratio", "best");
    for (const auto& [name, ours] : gflops) {
      const auto pos = name.find("/ours");
      if (pos == std::string::npos) continue;
      std::string raw = name;
      raw.replace(pos, 5, "/sgemm");
      auto it = gflops.find(raw);
      if (it == gflops.end()) continue;
      const double o = median(ours), s = median(it->second);
      const double ob = *std::max_element(ours.begin(), ours.end());
      const double sb = *std::max_element(it->second.begin(), it->second.end());
      std::printf("%-22s %11.1f %11.1f %7.3f %7.3f\n", name.substr(pos + 5).c_str(), o, s, o / s, ob / sb);
    }
  }

 private:
  static double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
  }
  std::map<std::string, std::vector<double>> gflops_, medians_;
};

}  // namespace

int main(int argc, char** argv) {
  coca::cpu::select_blas_kernels(argv);  // before any thread: may re-execute this program
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  try {
    register_all();
    RatioReporter reporter;
    benchmark::RunSpecifiedBenchmarks(&reporter);
    reporter.PrintRatios();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_ops: %s\n", e.what());
    return 1;
  }
  benchmark::Shutdown();
  return 0;
}
