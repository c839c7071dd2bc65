// One CoCa training step on the GPU (forward, both losses, backward, grad clip, AdamW),
// timed after warm-up: samples/s and model FLOPs utilisation.
//   coca_bench_step [config.json] [batch] [precision: fp32|tf32|amp_bf16] [steps]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "coca/kernels/cuda/runtime.h"
#include "coca/loss/coca_loss.h"
#include "coca/optim/adamw.h"

using namespace coca;

int main(int argc, char** argv) {
  try {
    const std::string config = argc > 1 ? argv[1] : std::string(COCA_CONFIG_DIR) + "/coca_ViT-B-32.json";
    const int64_t B = argc > 2 ? std::stoll(argv[2]) : 128;
    const std::string precision = argc > 3 ? argv[3] : "amp_bf16";
    const int steps = argc > 4 ? std::stoi(argv[4]) : 10;
    const double fwd_gflop = argc > 5 ? std::stod(argv[5]) : 33.1;  // per sample, ViT-B-32 at 224px
    if (cuda::device_count() == 0) {
      std::printf("[bench] no CUDA device: skipped\n");
      return 0;
    }
    if (precision == "fp32") cuda::set_matmul_precision(cuda::MatmulPrecision::Float32);
    else if (precision == "tf32") cuda::set_matmul_precision(cuda::MatmulPrecision::Tf32);
    else if (precision == "amp_bf16") cuda::set_matmul_precision(cuda::MatmulPrecision::Bf16);
    else throw Error("precision must be fp32, tf32 or amp_bf16, not " + precision);

    const CocaConfig cfg = CocaConfig::from_file(config);
    CoCa model(cfg);
    model.to(Device::CUDA);
    AdamWOptions o;
    AdamW opt(model.named_parameters(), o);
    Generator gen(1);
    const int64_t L = cfg.text.context_length, V = cfg.text.vocab_size, S = cfg.vision.image_size;
    Tensor images = Tensor::randn({B, 3, S, S}, gen).cuda();
    std::vector<int32_t> tok(B * L, 0);
    for (int64_t b = 0; b < B; ++b) {
      const int64_t len = 8 + static_cast<int64_t>(gen.below(L - 8));
      tok[b * L] = static_cast<int32_t>(V - 2);
      for (int64_t i = 1; i < len - 1; ++i) tok[b * L + i] = 1 + static_cast<int32_t>(gen.below(V - 3));
      tok[b * L + len - 1] = static_cast<int32_t>(V - 1);
    }
    Tensor tokens = Tensor::from_vector(tok, {B, L}).cuda();

    double loss = 0;
    auto step = [&]() {
      opt.zero_grad();
      Tensor total = coca_loss(model.forward(images, tokens), tokens, 0).total;
      total.backward();
      clip_grad_norm(model.parameters(), 1.0);
      opt.step(o.lr);
      model.clamp_logit_scale();
      loss = total.item();
    };
    for (int i = 0; i < 2; ++i) step();
    cuda::synchronize();
    const auto warm_stats = cuda::allocator_stats();
    std::vector<double> times;
    for (int i = 0; i < steps; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      step();
      cuda::synchronize();
      times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    // One more step with a synchronisation between phases: where the time goes.
    {
      using clk = std::chrono::steady_clock;
      auto secs = [](clk::time_point a, clk::time_point b) { return std::chrono::duration<double>(b - a).count(); };
      const auto t0 = clk::now();
      opt.zero_grad();
      Tensor total = coca_loss(model.forward(images, tokens), tokens, 0).total;
      cuda::synchronize();
      const auto t1 = clk::now();
      total.backward();
      cuda::synchronize();
      const auto t2 = clk::now();
      clip_grad_norm(model.parameters(), 1.0);
      cuda::synchronize();
      const auto t3 = clk::now();
      opt.step(o.lr);
      model.clamp_logit_scale();
      cuda::synchronize();
      const auto t4 = clk::now();
      std::printf("[bench] phases: forward+loss %.4f s, backward %.4f s, grad-norm clip %.4f s, AdamW %.4f s\n",
                  secs(t0, t1), secs(t1, t2), secs(t2, t3), secs(t3, t4));
    }
    // And one with every backend entry point timed by CUDA events: GPU time per kernel family.
    {
      cuda::set_profiling(true);
      const auto t0 = std::chrono::steady_clock::now();
      step();
      cuda::synchronize();
      const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::printf("[profile] profiled step wall time %.4f s\n", wall);
      cuda::profile_report();
      cuda::set_profiling(false);
    }
    std::sort(times.begin(), times.end());
    const double median = times[times.size() / 2];
    const double sps = static_cast<double>(B) / median;
    const double peak = 989e12;  // dense bf16, H100 SXM and H200 alike
    const double mfu = 3.0 * fwd_gflop * 1e9 * sps / peak;
    const auto st = cuda::allocator_stats();
    std::printf("[bench] steady state: %lld cudaMalloc calls in %d timed steps (allocator cache hits %lld)\n",
                static_cast<long long>(st.driver_allocs - warm_stats.driver_allocs), steps,
                static_cast<long long>(st.cache_hits - warm_stats.cache_hits));
    std::printf("[bench] coca device=\"%s\" config=%s batch=%lld precision=%s step_median=%.4f s "
                "samples/s=%.1f MFU=%.2f%% loss=%.4f allocator reserved=%.2f GiB driver_allocs=%lld\n",
                cuda::device_name(), config.c_str(), static_cast<long long>(B), precision.c_str(), median, sps,
                100 * mfu, loss, st.reserved / double(1ull << 30), static_cast<long long>(st.driver_allocs));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "coca_bench_step: %s\n", e.what());
    return 1;
  }
}
