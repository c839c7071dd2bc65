// Fine-tuning pieces of the model: checkpointed residual blocks (gradients bit for bit, float64
// finite differences, random-number replay, lower peak memory), FLIP patch dropout, OpenCLIP's
// tower-lock groups, and the config's preprocess_cfg / patch_dropout keys.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <set>

#include "coca/autograd/checkpoint.h"
#include "coca/eval/common.h"
#include "coca/loss/coca_loss.h"
#include "coca/model/coca.h"
#include "coca/model/finetune.h"
#include "common/gradcheck.h"
#include "micro.h"

using namespace coca;

namespace {

// A micro config with a 4 x 4 patch grid (16 patches), for patch dropout.
CocaConfig grid4_config(double patch_dropout = 0.0) {
  nlohmann::json j = test::micro_config().to_json();
  j["vision_cfg"]["image_size"] = 32;
  if (patch_dropout > 0) j["vision_cfg"]["patch_dropout"] = patch_dropout;
  return CocaConfig::from_json(j, "grid4");
}

// One forward/backward of the full loss; the gradients by parameter name (undefined: none).
std::map<std::string, Tensor> loss_gradients(CoCa& model, const Tensor& images, const Tensor& tokens,
                                             double* loss = nullptr) {
  model.zero_grad();
  CocaLosses l = coca_loss(model.forward(images, tokens), tokens, 0);
  l.total.backward();
  if (loss) *loss = l.total.item();
  std::map<std::string, Tensor> out;
  for (auto& [n, p] : model.named_parameters()) out[n] = p.grad();
  return out;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.defined() != b.defined()) return false;
  if (!a.defined()) return true;
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  Tensor x = a.contiguous(), y = b.contiguous();
  return std::memcmp(x.raw_data(), y.raw_data(), x.numel() * dtype_size(x.dtype())) == 0;
}

}  // namespace

// ---- the checkpoint node ------------------------------------------------------------------

TEST(Checkpoint, GradcheckFloat64InputsAndParameters) {
  Generator gen(3);
  Tensor x = Tensor::randn({2, 3, 4}, gen, DType::f64).set_requires_grad(true);
  Tensor kv = Tensor::randn({2, 3, 4}, gen, DType::f64).set_requires_grad(true);
  Tensor w = Tensor::randn({4, 4}, gen, DType::f64, 0.0, 0.5).set_requires_grad(true);
  Tensor b = Tensor::randn({4}, gen, DType::f64).set_requires_grad(true);
  auto f = [](const std::vector<Tensor>& in) {
    Tensor W = in[2], B = in[3];
    return checkpoint([W, B](const std::vector<Tensor>& v) { return add(gelu(linear(v[0], W, B)), mul(v[0], v[1])); },
                      {in[0], in[1]}, {W, B});
  };
  EXPECT_TRUE(coca::testing::gradcheck(f, {x, kv, w, b}));
}

TEST(Checkpoint, ParametersGetGradientsWhenTheInputNeedsNone) {
  // A trainable block after a frozen one: its input carries no gradient, its weights do.
  Generator gen(5);
  Tensor x = Tensor::randn({3, 4}, gen, DType::f64);
  Tensor w = Tensor::randn({4, 4}, gen, DType::f64).set_requires_grad(true);
  Tensor plain = sum(tanh(linear(x, w)));
  plain.backward();
  Tensor expected = w.grad().clone();
  w.zero_grad();
  Tensor ck = sum(checkpoint([w](const std::vector<Tensor>& v) { return tanh(linear(v[0], w)); }, {x}, {w}));
  ck.backward();
  ASSERT_TRUE(w.grad().defined());
  EXPECT_TRUE(same_bits(w.grad(), expected));
}

TEST(Checkpoint, ReplaysTheGeneratorOfRandomOps) {
  Generator data(9);
  Tensor x = Tensor::randn({64}, data, DType::f64).set_requires_grad(true);
  Generator gen(21);
  auto block = [&gen](const std::vector<Tensor>& v) { return mul(dropout(v[0], 0.5, gen), v[0]); };
  sum(block({x})).backward();
  Tensor expected = x.grad().clone();
  const auto after_plain = gen.state();
  x.zero_grad();
  gen.seed_with(21);
  Tensor y = checkpoint(block, {x}, {}, &gen);
  gen.next_u64();  // later draws between forward and backward must not leak into the recompute
  sum(y).backward();
  EXPECT_TRUE(same_bits(x.grad(), expected));
  gen.seed_with(21);
  (void)block({x});
  EXPECT_EQ(gen.state(), after_plain);
}

// ---- the model with --grad-checkpointing ----------------------------------------------------

TEST(GradCheckpointing, IdenticalGradientsBitForBit) {
  for (bool locked : {false, true}) {
    CoCa plain(test::micro_config()), ck(test::micro_config());
    plain.initialize(4);
    ck.initialize(4);
    ck.set_grad_checkpointing(true);
    if (locked) {  // frozen blocks before trainable ones: inputs without gradient
      for (CoCa* m : {&plain, &ck}) {
        lock_image_tower(*m, 2);
        lock_text_tower(*m, 2);
      }
    }
    Generator gen(8);
    Tensor images = Tensor::randn({3, 3, 16, 16}, gen);
    Tensor tokens = test::micro_tokens({4, 7, 3}, 7, 50, gen);
    double la = 0, lb = 0;
    auto ga = loss_gradients(plain, images, tokens, &la);
    auto gb = loss_gradients(ck, images, tokens, &lb);
    EXPECT_EQ(la, lb);
    int with_grad = 0;
    for (auto& [n, g] : ga) {
      EXPECT_TRUE(same_bits(g, gb[n])) << n << (locked ? " (locked)" : "");
      with_grad += g.defined();
    }
    EXPECT_GT(with_grad, locked ? 20 : 80);
  }
}

TEST(GradCheckpointing, FiniteDifferencesFloat64) {
  CoCa model(test::micro_config(true, 24), DType::f64);
  model.initialize(3);
  model.set_grad_checkpointing(true);
  Generator gen(12);
  Tensor images = Tensor::randn({2, 3, 16, 16}, gen, DType::f64);
  Tensor tokens = test::micro_tokens({5, 7}, 7, 50, gen);
  auto loss_value = [&]() {
    NoGradGuard ng;
    return coca_loss(model.forward(images, tokens), tokens, 0).total.item();
  };
  coca_loss(model.forward(images, tokens), tokens, 0).total.backward();
  const double h = 1e-5;
  int checked = 0;
  for (auto& [name, p] : model.named_parameters()) {
    if (name.find("resblocks") == std::string::npos && name.find("cross_attn") == std::string::npos) continue;
    Tensor g = p.grad();
    ASSERT_TRUE(g.defined()) << name;
    double* pp = p.data<double>();
    const int64_t i = static_cast<int64_t>(gen.below(p.numel()));
    const double saved = pp[i];
    pp[i] = saved + h;
    const double up = loss_value();
    pp[i] = saved - h;
    const double down = loss_value();
    pp[i] = saved;
    const double numeric = (up - down) / (2 * h);
    EXPECT_NEAR(g.data<double>()[i], numeric, 1e-6 * std::max(1.0, std::abs(numeric))) << name << "[" << i << "]";
    ++checked;
  }
  EXPECT_GT(checked, 50);
}

// Host memory of one coca_tiny forward/backward at batch 4, with and without: what the forward
// leaves alive for backward (the activations) and the peak over forward and backward.
TEST(GradCheckpointing, LowersPeakMemory) {
  const CocaConfig cfg = CocaConfig::from_file(std::string(COCA_CONFIG_DIR) + "/coca_tiny.json");
  CoCa model(cfg);
  Generator gen(2);
  Tensor images = Tensor::randn({4, 3, 64, 64}, gen);
  std::vector<int> lengths(4, 20);
  Tensor tokens = test::micro_tokens(lengths, 32, 4096, gen);
  int64_t kept[2] = {0, 0}, peak[2] = {0, 0};
  std::map<std::string, Tensor> grads[2];
  for (int on = 0; on < 2; ++on) {
    model.set_grad_checkpointing(on == 1);
    model.zero_grad();
    reset_host_tensor_peak_bytes();
    const int64_t before = host_tensor_bytes();
    CocaLosses l = coca_loss(model.forward(images, tokens), tokens, 0);
    kept[on] = host_tensor_bytes() - before;
    l.total.backward();
    peak[on] = host_tensor_peak_bytes() - before;
    for (auto& [n, p] : model.named_parameters()) grads[on][n] = p.grad();
  }
  std::printf("coca_tiny batch 4: kept for backward %.1f MiB plain, %.1f MiB checkpointed; peak %.1f MiB plain, "
              "%.1f MiB checkpointed\n",
              kept[0] / 1048576.0, kept[1] / 1048576.0, peak[0] / 1048576.0, peak[1] / 1048576.0);
  EXPECT_LT(kept[1], kept[0] / 2);
  EXPECT_LT(peak[1], peak[0]);
  for (auto& [n, g] : grads[0]) EXPECT_TRUE(same_bits(g, grads[1][n])) << n;
}

// ---- patch dropout ------------------------------------------------------------------------

TEST(PatchDropout, ConfigKeyAndTrainingOnly) {
  CoCa model(grid4_config(0.5));
  ASSERT_EQ(model.visual->patch_dropout, 0.5);
  EXPECT_EQ(CocaConfig::from_json(model.config().to_json(), "again").vision.patch_dropout, 0.5);
  Generator gen(6), pd(77);
  model.visual->patch_dropout_gen = &pd;
  Tensor images = Tensor::randn({4, 3, 32, 32}, gen);
  NoGradGuard ng;
  Tensor full = model.visual->embed(images);  // not training: every token
  ASSERT_EQ(full.shape(), (Shape{4, 17, 16}));
  model.set_training(true);
  Tensor part = model.visual->embed(images);
  ASSERT_EQ(part.shape(), (Shape{4, 1 + 8, 16}));  // max(1, int(16 * 0.5)) patches + class token
  // ln_pre is per token: each kept row equals a row of the undropped output, the class token
  // first, patches distinct and in grid order; samples choose independently.
  std::set<std::vector<int>> choices;
  for (int64_t b = 0; b < 4; ++b) {
    std::vector<int> rows;
    for (int64_t i = 0; i < 9; ++i) {
      int found = -1;
      for (int64_t j = 0; j < 17 && found < 0; ++j)
        if (same_bits(part.select(0, b).select(0, i), full.select(0, b).select(0, j))) found = static_cast<int>(j);
      ASSERT_GE(found, 0) << "sample " << b << " token " << i;
      rows.push_back(found);
    }
    EXPECT_EQ(rows[0], 0);
    for (size_t i = 1; i < rows.size(); ++i) EXPECT_GT(rows[i], rows[i - 1]);
    choices.insert(rows);
  }
  EXPECT_GT(choices.size(), 1u);
  // The whole model runs on the fewer tokens; evaluation (training off) matches p = 0.
  Tensor tokens = test::micro_tokens({4, 5, 6, 7}, 7, 50, gen);
  EXPECT_EQ(model.forward(images, tokens).image_features.shape(), (Shape{4, 16}));
  model.set_training(false);
  CoCa no_dropout(grid4_config(0.0));
  EXPECT_TRUE(same_bits(model.forward(images, tokens).image_features,
                        no_dropout.forward(images, tokens).image_features));
}

TEST(PatchDropout, KeepsAtLeastOnePatch) {
  CoCa model(grid4_config(0.99));
  Generator gen(6), pd(1);
  model.visual->patch_dropout_gen = &pd;
  model.set_training(true);
  NoGradGuard ng;
  EXPECT_EQ(model.visual->embed(Tensor::randn({2, 3, 32, 32}, gen)).size(1), 2);
}

TEST(PatchDropout, GradcheckThroughTheGatherFloat64) {
  CoCa model(grid4_config(0.5), DType::f64);
  model.initialize(2);
  Generator gen(4), pd(0);
  model.visual->patch_dropout_gen = &pd;
  model.set_training(true);
  Tensor images = Tensor::randn({2, 3, 32, 32}, gen, DType::f64).set_requires_grad(true);
  auto f = [&](const std::vector<Tensor>& in) {
    pd.seed_with(5);  // the same tokens at every evaluation
    return model.visual->embed(in[0]);
  };
  EXPECT_TRUE(coca::testing::gradcheck(f, {images}));
}

TEST(PatchDropout, ConfigValueOutsideRangeIsNamed) {
  nlohmann::json j = test::micro_config().to_json();
  j["vision_cfg"]["patch_dropout"] = 1.0;
  try {
    CocaConfig::from_json(j, "cfg.json");
    FAIL() << "accepted patch_dropout 1.0";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("vision_cfg.patch_dropout"), std::string::npos) << e.what();
  }
}

// ---- tower locks --------------------------------------------------------------------------

namespace {
std::set<std::string> trainable_under(const CoCa& m, const std::string& prefix) {
  std::set<std::string> out;
  for (auto& [n, p] : m.named_parameters())
    if (n.compare(0, prefix.size(), prefix) == 0 && p.requires_grad()) out.insert(n);
  return out;
}
std::set<std::string> names_under(const CoCa& m, const std::vector<std::string>& prefixes) {
  std::set<std::string> out;
  for (auto& [n, p] : m.named_parameters())
    for (const auto& pre : prefixes)
      if (n == pre || n.compare(0, pre.size() + 1, pre + ".") == 0) out.insert(n);
  return out;
}
}  // namespace

// OpenCLIP's VisionTransformer.lock groups, written out for a 2-layer tower.
TEST(LockImage, UnlockedGroupsBoundaries) {
  const std::vector<std::vector<std::string>> expected_new = {
      {"visual.proj"},
      {"visual.transformer.resblocks.1", "visual.ln_post"},
      {"visual.transformer.resblocks.0"},
      {"visual.conv1", "visual.class_embedding", "visual.positional_embedding", "visual.ln_pre"}};
  std::set<std::string> expected;
  for (int n = 0; n <= 4; ++n) {
    if (n > 0) {
      auto more = [&] {
        CoCa m(test::micro_config());
        return names_under(m, expected_new[n - 1]);
      }();
      expected.insert(more.begin(), more.end());
    }
    CoCa m(test::micro_config());
    lock_image_tower(m, n);
    EXPECT_EQ(trainable_under(m, "visual."), expected) << "unlocked groups " << n;
    EXPECT_EQ(trainable_under(m, "text.").size(), names_under(m, {"text"}).size());
    EXPECT_EQ(trainable_under(m, "text_decoder.").size(), names_under(m, {"text_decoder"}).size());
    EXPECT_TRUE(m.logit_scale.requires_grad());
    for (const auto& name : trainable_under(m, "visual.")) EXPECT_EQ(name.find("attn_pool"), std::string::npos);
  }
  CoCa m(test::micro_config());
  EXPECT_THROW(lock_image_tower(m, 5), Error);
}

TEST(LockText, UnlockedLayersBoundaries) {
  const std::vector<std::vector<std::string>> expected_new = {
      {"text.text_projection"},
      {"text.transformer.resblocks.1", "text.ln_final"},
      {"text.transformer.resblocks.0"},
      {"text.token_embedding", "text.positional_embedding"}};
  std::set<std::string> expected;
  for (int n = 0; n <= 4; ++n) {
    CoCa m(test::micro_config());
    if (n > 0) {
      auto more = names_under(m, expected_new[n - 1]);
      expected.insert(more.begin(), more.end());
    }
    lock_text_tower(m, n);
    EXPECT_EQ(trainable_under(m, "text."), expected) << "unlocked layers " << n;
    EXPECT_EQ(trainable_under(m, "visual.").size(), names_under(m, {"visual"}).size());
    EXPECT_FALSE(m.text->cls_emb.requires_grad());
  }
  CoCa m(test::micro_config());
  EXPECT_THROW(lock_text_tower(m, 5), Error);
}

// Frozen parameters receive no gradient at all (autograd does not reach them).
TEST(LockImage, FrozenParametersGetNoGradient) {
  CoCa m(test::micro_config());
  lock_image_tower(m, 1);
  Generator gen(8);
  Tensor images = Tensor::randn({2, 3, 16, 16}, gen);
  Tensor tokens = test::micro_tokens({4, 7}, 7, 50, gen);
  auto grads = loss_gradients(m, images, tokens);
  for (auto& [n, g] : grads) {
    const bool frozen = n.compare(0, 7, "visual.") == 0 && n != "visual.proj";
    EXPECT_EQ(g.defined(), !frozen) << n;
  }
}

// ---- preprocess_cfg -----------------------------------------------------------------------

TEST(PreprocessCfg, MeanStdReadWrittenAndChecked) {
  nlohmann::json j = test::micro_config().to_json();
  EXPECT_FALSE(j.contains("preprocess_cfg"));  // CLIP's defaults are not written
  j["preprocess_cfg"] = {{"mean", {0.5, 0.25, 0.125}}, {"std", {0.1, 0.2, 0.3}}};
  CocaConfig c = CocaConfig::from_json(j, "cfg.json");
  EXPECT_EQ(c.image_mean, (std::array<double, 3>{0.5, 0.25, 0.125}));
  EXPECT_EQ(c.image_std, (std::array<double, 3>{0.1, 0.2, 0.3}));
  EXPECT_EQ(CocaConfig::from_json(c.to_json(), "again").image_std, c.image_std);
  j["preprocess_cfg"]["std"] = {0.1, 0.0, 0.3};
  EXPECT_THROW(CocaConfig::from_json(j, "cfg.json"), Error);
  EXPECT_EQ(parse_rgb_triple("0.5,0.5,0.5", "--image-mean", false), (std::array<double, 3>{0.5, 0.5, 0.5}));
  EXPECT_EQ(parse_rgb_triple("0.1 0.2 0.3", "--image-std", true), (std::array<double, 3>{0.1, 0.2, 0.3}));
  EXPECT_THROW(parse_rgb_triple("0.1,0.2", "--image-std", true), Error);
  EXPECT_THROW(parse_rgb_triple("0.1,0,0.3", "--image-std", true), Error);
}

// Evaluation (coca-eval, zero-shot during training) normalises with the model config's values.
TEST(PreprocessCfg, EvalReaderOptionsFollowTheConfig) {
  nlohmann::json j = test::micro_config().to_json();
  j["preprocess_cfg"] = {{"mean", {0.5, 0.25, 0.125}}, {"std", {0.1, 0.2, 0.3}}};
  CoCa model(CocaConfig::from_json(j, "cfg.json"));
  const EvalOptions eo = eval::reader_options(model, "unused", 4, 0, 1);
  EXPECT_EQ(eo.mean, (std::array<float, 3>{0.5f, 0.25f, 0.125f}));
  EXPECT_EQ(eo.std, (std::array<float, 3>{0.1f, 0.2f, 0.3f}));
}
