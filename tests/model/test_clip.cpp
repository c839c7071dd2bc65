// OpenCLIP's other model families in the same classes: CLIP (class-token image pooling,
// end-of-text text pooling, no decoder, the text tower at the top level of the names) and
// CoCa without the attentional pooler (coca_base). Names and counts against OpenCLIP's,
// float64 gradient checks, trimming, config refusals, and the PyTorch reference goldens.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>

#include "coca/eval/generate.h"
#include "coca/loss/coca_loss.h"
#include "coca/model/weights.h"
#include "model_checks.h"

using namespace coca;

namespace {

CocaConfig micro_clip(bool custom_text = false, bool attentional_pool = false) {
  return test::micro_clip_config(custom_text, attentional_pool);
}

// CoCa as OpenCLIP's coca_base builds it: no attentional pooler, embed_dim below the widths.
CocaConfig micro_nopool() {
  nlohmann::json j = test::micro_config().to_json();
  j["embed_dim"] = 12;
  j["vision_cfg"].erase("attentional_pool");
  return CocaConfig::from_json(j, "micro_nopool");
}

CocaConfig config_file(const std::string& name) {
  return CocaConfig::from_file(std::string(COCA_CONFIG_DIR) + "/" + name + ".json");
}

std::vector<std::string> names(const nn::Module& m) {
  std::vector<std::string> out;
  for (auto& [n, t] : m.named_parameters()) out.push_back(n);
  return out;
}

bool has(const std::vector<std::string>& v, const std::string& s) { return std::find(v.begin(), v.end(), s) != v.end(); }

void expect_error(const std::function<void()>& f, const std::string& what) {
  try {
    f();
    ADD_FAILURE() << "expected an error containing '" << what << "'";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
}

}  // namespace

// OpenCLIP's published parameter counts and its CLIP state_dict layout: the text tower at the
// top level, in this order, with no decoder and no pooler.
TEST(ClipParams, OpenClipCountsAndNames) {
  const std::map<std::string, int64_t> counts = {
      {"ViT-B-32", 151277313}, {"ViT-B-16", 149620737}, {"ViT-L-14", 427616513}};
  for (auto& [name, count] : counts) {
    CoCa model(config_file(name), DType::f32, /*initialize_weights=*/false);
    EXPECT_FALSE(model.has_decoder()) << name;
    EXPECT_EQ(model.parameter_count(), count) << name;
  }
  CoCa b32(config_file("ViT-B-32"), DType::f32, false);
  const auto n = names(b32);
  ASSERT_GE(n.size(), 8u);
  EXPECT_EQ(n[0], "positional_embedding");
  EXPECT_EQ(n[1], "text_projection");
  EXPECT_EQ(n[2], "logit_scale");
  EXPECT_EQ(n[3], "visual.class_embedding");
  EXPECT_EQ(n[n.size() - 3], "token_embedding.weight");
  EXPECT_EQ(n[n.size() - 2], "ln_final.weight");
  EXPECT_EQ(n[n.size() - 1], "ln_final.bias");
  EXPECT_TRUE(has(n, "transformer.resblocks.11.mlp.c_proj.weight"));
  EXPECT_TRUE(has(n, "visual.transformer.resblocks.11.attn.in_proj_weight"));
  for (const std::string& s : n) {
    EXPECT_FALSE(s.starts_with("text.") || s.starts_with("text_decoder.") || s.starts_with("visual.attn_pool"))
        << s;
    EXPECT_NE(s, "cls_emb");
  }
  std::map<std::string, Shape> shape;
  for (auto& [name, t] : b32.named_parameters()) shape[name] = t.shape();
  EXPECT_EQ(shape["positional_embedding"], (Shape{77, 512}));
  EXPECT_EQ(shape["text_projection"], (Shape{512, 512}));
  EXPECT_EQ(shape["visual.proj"], (Shape{768, 512}));
  EXPECT_EQ(shape["visual.ln_post.weight"], (Shape{768}));
  EXPECT_EQ(shape["visual.positional_embedding"], (Shape{50, 768}));
}

// coca_base: the decoder reads the 768-wide patch tokens, the features are 512 wide.
TEST(ClipParams, CocaBaseLoads) {
  CoCa model(config_file("coca_base"), DType::f32, false);
  EXPECT_TRUE(model.has_decoder());
  std::map<std::string, Shape> shape;
  for (auto& [name, t] : model.named_parameters()) shape[name] = t.shape();
  EXPECT_EQ(shape.count("visual.attn_pool.query"), 0u);
  EXPECT_EQ(shape["visual.proj"], (Shape{768, 512}));
  EXPECT_EQ(shape["visual.ln_post.weight"], (Shape{768}));
  EXPECT_EQ(shape["text.positional_embedding"], (Shape{77, 768}));
  EXPECT_EQ(shape["text.text_projection"], (Shape{768, 512}));
  EXPECT_EQ(shape["text_decoder.text_projection"], (Shape{768, 64000}));
  EXPECT_EQ(shape["text_decoder.cross_attn.0.ln_1_kv.weight"], (Shape{768}));
}

TEST(ClipConfig, RoundTripAndRefusals) {
  for (bool custom : {false, true}) {
    const CocaConfig c = micro_clip(custom);
    const CocaConfig back = CocaConfig::from_json(c.to_json(), "round trip");
    EXPECT_TRUE(back.clip);
    EXPECT_EQ(back.custom_text, custom);
    EXPECT_FALSE(back.text.embed_cls);
    EXPECT_EQ(names(CoCa(back)), names(CoCa(c)));
  }
  const CocaConfig nopool = micro_nopool();
  EXPECT_EQ(names(CoCa(CocaConfig::from_json(nopool.to_json(), "round trip"))), names(CoCa(nopool)));

  nlohmann::json j = micro_clip().to_json();
  auto refused = [](nlohmann::json cfg, const std::string& what) {
    expect_error([&] { CocaConfig::from_json(cfg, "x.json"); }, what);
  };
  nlohmann::json k = j;
  k["vision_cfg"]["pool_type"] = "avg";
  refused(k, "vision_cfg.pool_type");
  k = j;
  k["quick_gelu"] = true;
  refused(k, "quick_gelu");
  k = j;
  k["text_cfg"]["pool_type"] = "eos";
  refused(k, "text_cfg.pool_type");
  k = j;
  k["text_cfg"]["embed_cls"] = true;  // OpenCLIP's CLIP text tower has no CLS token
  refused(k, "embed_cls");
  k = j;
  k["text_cfg"]["proj_bias"] = true;
  refused(k, "text_cfg.proj_bias");
  // A CoCa still needs its CLS token, and the decoder must read tokens of its own width.
  nlohmann::json m = micro_nopool().to_json();
  m["text_cfg"]["embed_cls"] = false;
  refused(m, "embed_cls' must be true for CoCa");
  m = micro_nopool().to_json();
  m["vision_cfg"]["width"] = 24;
  m["vision_cfg"]["head_width"] = 8;
  refused(m, "must equal 'vision_cfg.width'");
}

// The end-of-text position is each row's largest token id, its first occurrence.
TEST(ClipText, ArgmaxPositions) {
  const std::vector<int32_t> tok = {48, 3, 49, 0, 0,  //
                                    48, 49, 0, 0, 0,  //
                                    48, 7, 7, 9, 49,  //
                                    5, 9, 9, 0, 0};
  EXPECT_EQ(argmax_positions(tok, 4, 5), (std::vector<int64_t>{2, 1, 4, 1}));
}

// Float64 central differences of the loss (trimmed, as training runs) for every parameter.
TEST(ClipGradcheck, EveryParameter) { test::full_model_gradcheck(micro_clip(), {4, 7, 2}, true); }
TEST(ClipGradcheck, EveryParameterCustomTextAndPooler) {
  test::full_model_gradcheck(micro_clip(true, true), {4, 7, 2}, true);
}
TEST(ClipGradcheck, CocaWithoutPooler) { test::full_model_gradcheck(micro_nopool(), {4, 7, 3}, true); }

// A CLIP has no caption loss: the total is the weighted contrastive loss, and no logits.
TEST(ClipLoss, ContrastiveOnly) {
  CoCa model(micro_clip(), DType::f64);
  Generator gen(5);
  Tensor images = Tensor::randn({3, 3, 16, 16}, gen, DType::f64);
  Tensor tokens = test::micro_tokens({4, 7, 2}, 7, 50, gen);
  NoGradGuard ng;
  CocaOutput out = model.forward(images, tokens, true);
  EXPECT_FALSE(out.captions);
  EXPECT_FALSE(out.caption_logits.defined());
  CocaLosses l = coca_loss(out, tokens, 0, LossWeights{1.5, 2.0});
  EXPECT_EQ(l.caption.item(), 0.0);
  EXPECT_NEAR(l.total.item(), 1.5 * l.contrastive.item(), 1e-12);
  EXPECT_GT(l.contrastive.item(), 0.0);
  CoCa f32(micro_clip());
  expect_error([&] { eval::CaptionDecoder decoder(f32); }, "is a CLIP");
}

// Trimming after the last end-of-text token changes nothing: features, loss and every gradient
// equal the full-length forward's, with and without padding left at the end of the batch.
TEST(ClipText, TrimmingMatchesFullLength) {
  for (const std::vector<int>& lengths : {std::vector<int>{4, 5, 3}, {2, 2, 3}, {3, 7, 4}}) {
    CoCa model(micro_clip(), DType::f64);
    model.initialize(4);
    Generator gen(17);
    Tensor images = Tensor::randn({3, 3, 16, 16}, gen, DType::f64);
    Tensor tokens = test::micro_tokens(lengths, 7, 50, gen);
    auto run = [&](bool trim) {
      for (auto& [n, p] : model.named_parameters()) p.zero_grad();
      CocaOutput out = model.forward(images, tokens, trim);
      CocaLosses l = coca_loss(out, tokens, 0);
      l.total.backward();
      std::map<std::string, std::vector<double>> r;
      r["loss"] = {l.total.item()};
      r["text_features"] = out.text_features.to_double_vector();
      for (auto& [n, p] : model.named_parameters()) r["grad " + n] = p.grad().to_double_vector();
      return r;
    };
    auto full = run(false), trimmed = run(true);
    for (auto& [name, want] : full) {
      const auto& got = trimmed.at(name);
      ASSERT_EQ(got.size(), want.size()) << name;
      for (size_t i = 0; i < want.size(); ++i)
        EXPECT_NEAR(got[i], want[i], 1e-12 * std::max(1.0, std::abs(want[i]))) << name << "[" << i << "]";
    }
  }
}

// Weights written here load back bit for bit, under OpenCLIP's CLIP names.
TEST(ClipWeights, RoundTrip) {
  CoCa a(micro_clip()), b(micro_clip());
  a.initialize(7);
  const std::string path = (std::filesystem::temp_directory_path() / "coca_clip_rt.safetensors").string();
  save_weights(a, path);
  load_weights(b, path);
  auto pa = a.named_parameters(), pb = b.named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_EQ(pa[i].second.to_double_vector(), pb[i].second.to_double_vector());
  CoCa custom(micro_clip(true));  // the same tensors under text.: refused, naming them
  expect_error([&] { load_weights(custom, path); }, "text.");
  std::filesystem::remove(path);
}

// The independent PyTorch reference (tests/reference/): features, the loss and the gradient of
// every parameter on its weights and inputs.
TEST(ClipGolden, MatchesPyTorchReference) { test::compare_with_golden("micro_clip", true, 20); }
TEST(ClipGolden, MatchesPyTorchReferenceCustomText) { test::compare_with_golden("micro_clip_custom", true, 20); }
TEST(ClipGolden, CocaWithoutPoolerMatchesPyTorchReference) {
  test::compare_with_golden("micro_nopool", true, 30);
}
