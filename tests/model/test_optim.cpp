// AdamW against a scalar re-derivation of torch.optim.AdamW, decay exclusions, schedules,
// clipping and the logit_scale clamp.
#include <gtest/gtest.h>

#include <cmath>

#include "coca/model/coca.h"
#include "coca/optim/adamw.h"
#include "micro.h"

using namespace coca;

TEST(AdamW, MatchesReferenceUpdateOverThreeSteps) {
  Generator gen(4);
  Tensor w = Tensor::randn({3, 4}, gen, DType::f64).set_requires_grad(true);
  Tensor b = Tensor::randn({4}, gen, DType::f64).set_requires_grad(true);
  AdamWOptions o;
  o.lr = 0.01, o.beta1 = 0.9, o.beta2 = 0.98, o.eps = 1e-6, o.weight_decay = 0.1;
  AdamW opt({{"layer.weight", w}, {"layer.bias", b}}, o);
  auto w0 = w.to_double_vector(), b0 = b.to_double_vector();
  std::vector<double> mw(12, 0), vw(12, 0), mb(4, 0), vb(4, 0);
  for (int step = 1; step <= 3; ++step) {
    Tensor gw = Tensor::randn({3, 4}, gen, DType::f64), gb = Tensor::randn({4}, gen, DType::f64);
    w.set_grad(gw.clone());
    b.set_grad(gb.clone());
    opt.step(o.lr);
    auto ref = [&](std::vector<double>& p, std::vector<double>& m, std::vector<double>& v, const std::vector<double>& g,
                   bool decay) {
      for (size_t i = 0; i < p.size(); ++i) {
        if (decay) p[i] -= o.lr * o.weight_decay * p[i];
        m[i] = o.beta1 * m[i] + (1 - o.beta1) * g[i];
        v[i] = o.beta2 * v[i] + (1 - o.beta2) * g[i] * g[i];
        const double mhat = m[i] / (1 - std::pow(o.beta1, step)), vhat = v[i] / (1 - std::pow(o.beta2, step));
        p[i] -= o.lr * mhat / (std::sqrt(vhat) + o.eps);
      }
    };
    ref(w0, mw, vw, gw.to_double_vector(), true);
    ref(b0, mb, vb, gb.to_double_vector(), false);  // 1-D: no decay
    auto wn = w.to_double_vector(), bn = b.to_double_vector();
    for (size_t i = 0; i < wn.size(); ++i) EXPECT_NEAR(wn[i], w0[i], 1e-12);
    for (size_t i = 0; i < bn.size(); ++i) EXPECT_NEAR(bn[i], b0[i], 1e-12);
  }
}

TEST(AdamW, WeightDecayExclusions) {
  CoCa model(test::micro_config());
  for (auto& [name, t] : model.named_parameters()) {
    const bool excluded = excluded_from_weight_decay(name, t);
    const bool should = t.dim() <= 1 || name == "logit_scale" || name == "text.cls_emb" ||
                        name == "visual.class_embedding" || name.find("positional_embedding") != std::string::npos ||
                        name == "visual.attn_pool.query" || name == "text.token_embedding.weight";
    EXPECT_EQ(excluded, should) << name;
  }
  EXPECT_FALSE(excluded_from_weight_decay("visual.transformer.resblocks.0.attn.in_proj_weight",
                                          Tensor::zeros({6, 2})));
}

TEST(LrSchedule, CosineWarmupConstantCooldown) {
  // warmup 10 steps to 1.0 then cosine to 0 at step 110
  EXPECT_DOUBLE_EQ(learning_rate(LrSchedule::Cosine, 1.0, 0, 10, 110), 0.1);
  EXPECT_DOUBLE_EQ(learning_rate(LrSchedule::Cosine, 1.0, 9, 10, 110), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate(LrSchedule::Cosine, 1.0, 10, 10, 110), 1.0);
  EXPECT_NEAR(learning_rate(LrSchedule::Cosine, 1.0, 60, 10, 110), 0.5, 1e-12);
  EXPECT_NEAR(learning_rate(LrSchedule::Cosine, 1.0, 110, 10, 110), 0.0, 1e-12);
  EXPECT_DOUBLE_EQ(learning_rate(LrSchedule::Constant, 2.0, 50, 10, 110), 2.0);
  EXPECT_DOUBLE_EQ(learning_rate(LrSchedule::ConstantCooldown, 2.0, 50, 10, 110, 20), 2.0);
  EXPECT_NEAR(learning_rate(LrSchedule::ConstantCooldown, 2.0, 100, 10, 110, 20), 1.0, 1e-12);
  EXPECT_THROW(parse_lr_schedule("linear-ish"), Error);
}

TEST(GradClip, ScalesToMaxNorm) {
  Tensor a = Tensor::zeros({2}, DType::f64).set_requires_grad(true);
  Tensor b = Tensor::zeros({1}, DType::f64).set_requires_grad(true);
  a.set_grad(Tensor::from_vector(std::vector<double>{3, 0}, {2}));
  b.set_grad(Tensor::from_vector(std::vector<double>{4}, {1}));
  EXPECT_DOUBLE_EQ(global_grad_norm({a, b}), 5.0);
  const double before = clip_grad_norm({a, b}, 1.0);
  EXPECT_DOUBLE_EQ(before, 5.0);
  EXPECT_NEAR(global_grad_norm({a, b}), 1.0, 1e-6);
  EXPECT_NEAR(a.grad().to_double_vector()[0], 0.6, 1e-6);
}

TEST(LogitScale, ClampedToLn100) {
  CoCa model(test::micro_config());
  EXPECT_NEAR(model.logit_scale.item(), std::log(1 / 0.07), 1e-6);
  model.logit_scale.fill_(7.0);
  model.clamp_logit_scale();
  EXPECT_NEAR(model.logit_scale.item(), std::log(100.0), 1e-6);
  model.logit_scale.fill_(-1.0);
  model.clamp_logit_scale();
  EXPECT_EQ(model.logit_scale.item(), 0.0);
}
