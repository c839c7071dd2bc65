// The whole CoCa model on the GPU against the CPU: loss and every parameter gradient after one
// forward/backward, then 20 AdamW steps tracking the CPU run step by step.
#include <cmath>
#include <cstdlib>

#include "../model/micro.h"
#include "coca/loss/coca_loss.h"
#include "coca/optim/adamw.h"
#include "parity.h"

using namespace coca;
using namespace coca::test;

namespace {

struct Pair {
  std::unique_ptr<CoCa> cpu, gpu;
};

// Two identically initialised models, one moved to the GPU; weights perturbed so that every
// path carries signal.
Pair make_models(const CocaConfig& cfg) {
  Pair p{std::make_unique<CoCa>(cfg), std::make_unique<CoCa>(cfg)};
  Generator gen(5);
  auto a = p.cpu->named_parameters(), b = p.gpu->named_parameters();
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].first.find("ln_") != std::string::npos || a[i].first == "logit_scale") continue;
    NoGradGuard ng;
    Tensor noise = Tensor::randn(a[i].second.shape(), gen, DType::f32, 0.0, 0.05);
    a[i].second.copy_(add(a[i].second, noise));
    b[i].second.copy_(a[i].second);
  }
  p.gpu->to(Device::CUDA);
  return p;
}

void compare_gradients(CoCa& cpu, CoCa& gpu, double tol) {
  auto a = cpu.named_parameters(), b = gpu.named_parameters();
  ASSERT_EQ(a.size(), b.size());
  double worst = 0;
  std::string worst_name;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_TRUE(a[i].second.grad().defined() && b[i].second.grad().defined()) << a[i].first;
    EXPECT_EQ(b[i].second.grad().device(), Device::CUDA) << a[i].first;
    const double e = nmse(b[i].second.grad(), a[i].second.grad());
    EXPECT_LE(e, tol) << a[i].first;
    if (e > worst) worst = e, worst_name = a[i].first;
  }
  std::printf("[parity] model gradients: %zu tensors, worst nmse=%.2e (%s) %s\n", a.size(), worst,
              worst_name.c_str(), worst <= tol ? "ok" : "FAIL");
}

void model_parity(const CocaConfig& cfg, int64_t B, const char* label) {
  Pair m = make_models(cfg);
  Generator gen(9);
  const int64_t L = cfg.text.context_length, V = cfg.text.vocab_size;
  Tensor images = Tensor::randn({B, 3, cfg.vision.image_size, cfg.vision.image_size}, gen);
  std::vector<int> lengths;
  for (int64_t b = 0; b < B; ++b) lengths.push_back(static_cast<int>(2 + (b * 5) % (L - 1)));
  Tensor tokens = micro_tokens(lengths, L, V, gen);
  auto lc = coca_loss(m.cpu->forward(images, tokens), tokens, 0);
  auto lg = coca_loss(m.gpu->forward(images.cuda(), tokens.cuda()), tokens.cuda(), 0);
  EXPECT_EQ(lg.total.device(), Device::CUDA);
  const double vc = lc.total.item(), vg = lg.total.item();
  std::printf("[parity] %s loss cpu=%.8f gpu=%.8f (contrastive %.6f/%.6f caption %.6f/%.6f)\n", label, vc, vg,
              lc.contrastive.item(), lg.contrastive.item(), lc.caption.item(), lg.caption.item());
  EXPECT_NEAR(vg, vc, 1e-5 * std::max(1.0, std::abs(vc)));
  lc.total.backward();
  lg.total.backward();
  compare_gradients(*m.cpu, *m.gpu, 1e-7);
}

}  // namespace

TEST(CudaModel, MicroLossAndEveryGradient) {
  COCA_SKIP_WITHOUT_GPU();
  cuda::set_matmul_precision(cuda::MatmulPrecision::Float32);
  model_parity(micro_config(false, 16), 4, "micro");
  model_parity(micro_config(true, 24), 3, "micro_separate_kv");
}

TEST(CudaModel, TinyLossAndEveryGradient) {
  COCA_SKIP_WITHOUT_GPU();
  cuda::set_matmul_precision(cuda::MatmulPrecision::Float32);
  // The configs folder can move with a carried build (tests/gpu/run_on_device.sh sets it).
  const char* dir = std::getenv("COCA_CONFIG_DIR");
  model_parity(CocaConfig::from_file(std::string(dir ? dir : COCA_CONFIG_DIR) + "/coca_tiny.json"), 4, "tiny");
}

TEST(CudaModel, TwentyTrainingStepsTrackCpu) {
  COCA_SKIP_WITHOUT_GPU();
  cuda::set_matmul_precision(cuda::MatmulPrecision::Float32);
  const CocaConfig cfg = micro_config(false, 16);
  Pair m = make_models(cfg);
  Generator gen(21);
  const int64_t B = 6, L = cfg.text.context_length, V = cfg.text.vocab_size;
  Tensor images = Tensor::randn({B, 3, cfg.vision.image_size, cfg.vision.image_size}, gen);
  Tensor tokens = micro_tokens({7, 5, 3, 7, 4, 6}, L, V, gen);
  Tensor images_g = images.cuda(), tokens_g = tokens.cuda();
  AdamWOptions o;
  o.lr = 1e-3;
  AdamW oc(m.cpu->named_parameters(), o), og(m.gpu->named_parameters(), o);
  double worst = 0;
  for (int step = 0; step < 20; ++step) {
    oc.zero_grad();
    og.zero_grad();
    Tensor lc = coca_loss(m.cpu->forward(images, tokens), tokens, 0).total;
    Tensor lg = coca_loss(m.gpu->forward(images_g, tokens_g), tokens_g, 0).total;
    lc.backward();
    lg.backward();
    const double nc = clip_grad_norm(m.cpu->parameters(), 1.0), ng = clip_grad_norm(m.gpu->parameters(), 1.0);
    oc.step(o.lr);
    og.step(o.lr);
    m.cpu->clamp_logit_scale();
    m.gpu->clamp_logit_scale();
    const double vc = lc.item(), vg = lg.item();
    worst = std::max(worst, std::abs(vg - vc) / std::max(1.0, std::abs(vc)));
    if (step % 5 == 0 || step == 19)
      std::printf("[train] step %2d loss cpu=%.7f gpu=%.7f grad-norm cpu=%.6f gpu=%.6f\n", step, vc, vg, nc, ng);
    EXPECT_NEAR(vg, vc, 1e-4 * std::max(1.0, std::abs(vc))) << "step " << step;
  }
  auto a = m.cpu->named_parameters(), b = m.gpu->named_parameters();
  double pworst = 0;
  for (size_t i = 0; i < a.size(); ++i) pworst = std::max(pworst, nmse(b[i].second, a[i].second));
  std::printf("[parity] 20 steps: worst relative loss gap %.2e, worst parameter nmse %.2e %s\n", worst, pworst,
              pworst <= 1e-7 ? "ok" : "FAIL");
  EXPECT_LE(pworst, 1e-7);
}
