#pragma once
// Whole-model checks shared by the model tests: the float64 finite-difference gradient of the
// total loss for sampled entries of every parameter, and the comparison with the independent
// PyTorch reference's goldens (tests/reference/golden/).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>

#include "coca/loss/coca_loss.h"
#include "coca/model/weights.h"
#include "micro.h"

namespace coca::test {

// Central differences (h = 1e-5) of the total loss for 3 sampled entries of every parameter,
// with weights enlarged from initialize(3) so every path contributes; tokens of `lengths`.
inline void full_model_gradcheck(const CocaConfig& cfg, const std::vector<int>& lengths = {4, 7, 3},
                                 bool trim_padding = false) {
  CoCa model(cfg, DType::f64);
  model.initialize(3);
  Generator gen(11);
  {
    NoGradGuard ng;
    for (auto& [n, p] : model.named_parameters()) {
      if (n.find("ln_") != std::string::npos || n == "logit_scale") continue;
      p.copy_(add(p, Tensor::randn(p.shape(), gen, DType::f64, 0.0, 0.1)));
    }
  }
  const int64_t B = static_cast<int64_t>(lengths.size()), L = cfg.text.context_length;
  Tensor images = Tensor::randn({B, 3, cfg.vision.image_size, cfg.vision.image_size}, gen, DType::f64);
  Tensor tokens = micro_tokens(lengths, L, cfg.text.vocab_size, gen);
  auto loss_value = [&]() {
    NoGradGuard ng;
    return coca_loss(model.forward(images, tokens, trim_padding), tokens, 0).total.item();
  };
  coca_loss(model.forward(images, tokens, trim_padding), tokens, 0).total.backward();
  const double h = 1e-5, tol = 1e-6;  // relative to max(1, |grad|)
  int checked = 0;
  for (auto& [name, p] : model.named_parameters()) {
    Tensor g = p.grad();
    ASSERT_TRUE(g.defined()) << name << " received no gradient";
    double* pp = p.data<double>();
    const double* gp = g.data<double>();
    for (int k = 0; k < 3; ++k) {
      const int64_t i = static_cast<int64_t>(gen.below(p.numel()));
      const double saved = pp[i];
      pp[i] = saved + h;
      const double up = loss_value();
      pp[i] = saved - h;
      const double down = loss_value();
      pp[i] = saved;
      const double numeric = (up - down) / (2 * h);
      EXPECT_NEAR(gp[i], numeric, tol * std::max(1.0, std::abs(numeric))) << name << "[" << i << "]";
      ++checked;
    }
  }
  EXPECT_GT(checked, 50);
}

// Per-tensor relative error max|a-b| / max|b| (the reference's own float32-vs-float64 spread is
// 1.7e-5; see tests/reference/README.md).
inline double golden_rel_err(const Tensor& ours, const Tensor& ref) {
  auto a = ours.to_double_vector(), b = ref.to_double_vector();
  EXPECT_EQ(a.size(), b.size());
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    diff = std::max(diff, std::abs(a[i] - b[i]));
    scale = std::max(scale, std::abs(b[i]));
  }
  return diff / std::max(scale, 1e-30);
}

// The golden <cfg_name>: features, losses (and caption logits with a decoder) on its weights and
// inputs, and the gradient of the total loss; full length and trimmed. `every_gradient`: the
// golden must hold a gradient for every parameter (else at least `min_gradients` are compared).
inline void compare_with_golden(const std::string& cfg_name, bool every_gradient, int min_gradients) {
  const std::string dir = COCA_GOLDEN_DIR;
  CoCa model(CocaConfig::from_file(dir + "/" + cfg_name + ".json"));
  load_weights(model, dir + "/" + cfg_name + "_weights.safetensors");
  std::map<std::string, Tensor> io;
  for (auto& [n, t] : load_safetensors(dir + "/" + cfg_name + "_io.safetensors")) io[n] = t;
  for (bool trim : {false, true}) {
    for (auto& [n, p] : model.named_parameters()) p.zero_grad();
    auto out = model.forward(io.at("images"), io.at("tokens"), trim);
    auto losses = coca_loss(out, io.at("tokens"), model.config().text.pad_id);
    losses.total.backward();
    EXPECT_LE(golden_rel_err(out.image_features, io.at("image_features")), 1e-4);
    EXPECT_LE(golden_rel_err(out.text_features, io.at("text_features")), 1e-4);
    EXPECT_LE(golden_rel_err(losses.contrastive, io.at("contrastive_loss")), 1e-4);
    EXPECT_LE(golden_rel_err(losses.total, io.at("total_loss")), 1e-4);
    if (model.has_decoder()) {
      EXPECT_LE(golden_rel_err(losses.caption, io.at("caption_loss")), 1e-4);
      if (!trim) EXPECT_LE(golden_rel_err(out.caption_logits, io.at("caption_logits")), 1e-4);
    }
    int grads = 0;
    for (auto& [name, p] : model.named_parameters()) {
      auto it = io.find("grad/" + name);
      if (it == io.end()) {
        EXPECT_FALSE(every_gradient) << "the golden has no gradient for " << name;
        continue;
      }
      ASSERT_TRUE(p.grad().defined()) << name;
      EXPECT_LE(golden_rel_err(p.grad(), it->second), 1e-3) << "gradient of " << name << " trim " << trim;
      ++grads;
    }
    EXPECT_GE(grads, min_gradients);
  }
}

}  // namespace coca::test
