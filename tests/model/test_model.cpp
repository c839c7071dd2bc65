// CoCa model: parameter names/shapes, full-model float64 gradient check, CLS-mask semantics,
// weights round trip, config errors, and the PyTorch golden comparison.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "coca/loss/coca_loss.h"
#include "coca/model/weights.h"
#include "model_checks.h"

using namespace coca;

namespace {

std::vector<std::pair<std::string, Shape>> read_tsv(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::vector<std::pair<std::string, Shape>> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ls(line);
    std::string name, shape;
    ls >> name >> shape;
    Shape s;
    if (shape != "scalar") {
      std::stringstream ss(shape);
      std::string d;
      while (std::getline(ss, d, 'x')) s.push_back(std::stoll(d));
    }
    out.emplace_back(name, s);
  }
  return out;
}

void expect_params_match_tsv(const std::string& config, const std::string& tsv) {
  CoCa model(CocaConfig::from_file(std::string(COCA_CONFIG_DIR) + "/" + config + ".json"));
  auto expected = read_tsv(std::string(COCA_TEST_DATA) + "/" + tsv);
  std::map<std::string, Shape> ours;
  for (auto& [n, t] : model.named_parameters()) ours[n] = t.shape();
  EXPECT_EQ(ours.size(), expected.size());
  for (auto& [n, s] : expected) {
    ASSERT_TRUE(ours.count(n)) << "missing " << n;
    EXPECT_EQ(shape_str(ours[n]), shape_str(s)) << n;
  }
}

}  // namespace

TEST(CocaParams, TinyMatchesOpenClipNames) { expect_params_match_tsv("coca_tiny", "coca_tiny.tsv"); }
TEST(CocaParams, ViTB32MatchesOpenClipNames) { expect_params_match_tsv("coca_ViT-B-32", "coca_ViT-B-32.tsv"); }

TEST(CocaConfig, MissingKeyIsNamed) {
  nlohmann::json j = {{"embed_dim", 16}, {"vision_cfg", {{"image_size", 16}, {"width", 16}, {"layers", 1}}},
                      {"text_cfg", {}}, {"multimodal_cfg", {}}};
  try {
    CocaConfig::from_json(j, "bad.json");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("vision_cfg.patch_size"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("bad.json"), std::string::npos) << e.what();
  }
}

// OpenCLIP's init_logit_scale: the model starts from it, the config round-trips it, and a
// value the trainer's clamp would move is refused naming the key.
TEST(CocaConfig, InitLogitScale) {
  EXPECT_NEAR(CoCa(test::micro_config()).logit_scale.item(), std::log(1 / 0.07), 1e-6);
  auto j = test::micro_config().to_json();
  EXPECT_FALSE(j.contains("init_logit_scale"));
  j["init_logit_scale"] = 3.5;
  const CocaConfig c = CocaConfig::from_json(j, "x.json");
  EXPECT_NEAR(CoCa(c).logit_scale.item(), 3.5, 1e-6);
  EXPECT_EQ(c.to_json().at("init_logit_scale").get<double>(), 3.5);
  j["init_logit_scale"] = 5.0;
  try {
    CocaConfig::from_json(j, "x.json");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("init_logit_scale"), std::string::npos) << e.what();
  }
}

TEST(CocaConfig, InvalidValueIsNamed) {
  auto cfg = test::micro_config().to_json();
  cfg["text_cfg"]["heads"] = "four";
  try {
    CocaConfig::from_json(cfg, "x.json");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("text_cfg.heads"), std::string::npos) << e.what();
  }
}

// Found by tests/fuzz/fuzz_model_config: a float integer past int64 was cast (undefined), and a
// JSON number past double's range escaped as nlohmann's out_of_range instead of our Error.
TEST(CocaConfig, NumbersOutOfRangeAreNamed) {
  auto cfg = test::micro_config().to_json();
  for (const nlohmann::json& v : {nlohmann::json(1e300), nlohmann::json(-1e19), nlohmann::json(UINT64_MAX)}) {
    cfg["embed_dim"] = v;
    try {
      CocaConfig::from_json(cfg, "x.json");
      FAIL() << "no error for " << v.dump();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("x.json: key 'config.embed_dim' must be an integer"), std::string::npos)
          << e.what();
    }
  }
  cfg["embed_dim"] = 16.0;  // an integral float still reads
  EXPECT_EQ(CocaConfig::from_json(cfg, "x.json").embed_dim, 16);
  const std::string path = (std::filesystem::temp_directory_path() / "coca_overflow.json").string();
  std::ofstream(path) << R"({"embed_dim": 4e9408})";
  try {
    CocaConfig::from_file(path);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model config " + path + ": invalid JSON"), std::string::npos) << e.what();
  }
  std::filesystem::remove(path);
}

// Float64 central differences of the total CoCa loss for sampled entries of EVERY parameter
// tensor, on a batch with padding of different lengths (model_checks.h).
TEST(CocaGradcheck, FullLossEveryParameterPacked) { test::full_model_gradcheck(test::micro_config(false, 16)); }
TEST(CocaGradcheck, FullLossEveryParameterSeparateKV) { test::full_model_gradcheck(test::micro_config(true, 24)); }

// Trimming the padding (CoCa::forward(..., trim_padding=true), what training runs) changes
// nothing but the work: same features, same losses, same gradient for every parameter, and
// the packed logits are the full forward's at the positions whose target is a token; with
// both CLS masks, when the longest caption leaves padding (T < L) and when it fills L, in one
// length bucket and in several.
TEST(CocaTrimPadding, LossesAndEveryGradientMatchTheFullLength) {
  for (bool corrected : {false, true})
    for (int64_t buckets : {1, 3})
      for (const std::vector<int>& lengths : {std::vector<int>{4, 5, 3, 6, 2}, {2, 2, 2, 3, 2}, {3, 7, 4, 2, 5}}) {
        CoCa model(test::micro_config(corrected), DType::f64);
        model.initialize(5);
        model.text_buckets = buckets;
        model.min_bucket_rows = 1;
        Generator gen(13);
        const int64_t B = static_cast<int64_t>(lengths.size()), L = 7;
        Tensor images = Tensor::randn({B, 3, 16, 16}, gen, DType::f64);
        Tensor tokens = test::micro_tokens(lengths, L, 50, gen);
        const int64_t longest = *std::max_element(lengths.begin(), lengths.end());
        EXPECT_EQ(model.text->used_length(tokens.to_vector<int32_t>(), B), std::min<int64_t>(L, longest + 1));
        auto run = [&](bool trim) {
          for (auto& [n, p] : model.named_parameters()) p.zero_grad();
          CocaOutput out = model.forward(images, tokens, trim);
          CocaLosses l = coca_loss(out, tokens, 0);
          l.total.backward();
          std::map<std::string, std::vector<double>> r;
          r["contrastive"] = {l.contrastive.item()};
          r["caption"] = {l.caption.item()};
          r["text_features"] = out.text_features.to_double_vector();
          r["image_features"] = out.image_features.to_double_vector();
          for (auto& [n, p] : model.named_parameters()) r["grad " + n] = p.grad().to_double_vector();
          std::vector<double> logits;  // at the positions whose target is a token
          if (trim) {
            logits = out.caption_logits.to_double_vector();
          } else {
            const auto tok = tokens.to_vector<int32_t>();
            const auto all = out.caption_logits.to_double_vector();  // [B, L-1, V]
            for (int64_t b = 0; b < B; ++b)
              for (int64_t p = 0; p + 1 < L; ++p)
                if (tok[b * L + p + 1] != 0) logits.insert(logits.end(), all.begin() + (b * (L - 1) + p) * 50,
                                                           all.begin() + (b * (L - 1) + p + 1) * 50);
          }
          if (buckets > 1) std::sort(logits.begin(), logits.end());  // rows come bucket by bucket
          r["logits"] = logits;
          return r;
        };
        auto full = run(false), trimmed = run(true);
        ASSERT_EQ(full.size(), trimmed.size());
        for (auto& [name, want] : full) {
          const auto& got = trimmed.at(name);
          ASSERT_EQ(got.size(), want.size()) << name;
          for (size_t i = 0; i < want.size(); ++i)
            EXPECT_NEAR(got[i], want[i], 1e-12 * std::max(1.0, std::abs(want[i])))
                << name << "[" << i << "] corrected " << corrected << " buckets " << buckets << " longest " << longest;
        }
      }
}

// Logits that leave out a target that is a token are refused, packed or [B, T-1, V].
TEST(CocaTrimPadding, CaptionLossRefusesLogitsThatDropATarget) {
  CoCa model(test::micro_config(), DType::f64);
  Generator gen(2);
  Tensor images = Tensor::randn({2, 3, 16, 16}, gen, DType::f64);
  Tensor short_tokens = test::micro_tokens({3, 4}, 7, 50, gen);
  Tensor long_tokens = test::micro_tokens({3, 6}, 7, 50, gen);
  NoGradGuard ng;
  CocaOutput out = model.forward(images, short_tokens, true);
  EXPECT_EQ(out.caption_logits.shape(), (Shape{5, 50}));  // (3 - 1) + (4 - 1) targets
  EXPECT_NO_THROW(caption_loss(out, short_tokens, 0));
  auto expect_error = [](auto&& f, const std::string& what) {
    try {
      f();
      ADD_FAILURE() << "expected an error containing '" << what << "'";
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  expect_error([&] { caption_loss(out, long_tokens, 0); }, "hold 7");
  Tensor four = Tensor::zeros({2, 4, 50}, DType::f64);  // logits for positions 0..3
  EXPECT_NO_THROW(caption_loss(four, short_tokens, 0));
  expect_error([&] { caption_loss(four, long_tokens, 0); }, "has a token at position 5");
}

// Legacy mask, written out by hand for one row: L = 5, tokens [sot, a, eot, pad, pad].
TEST(CocaClsMask, LegacyShiftedValidity) {
  CoCa model(test::micro_config(false));
  const int64_t L = 7;
  Tensor tokens = Tensor::from_vector(std::vector<int32_t>{48, 5, 49, 0, 0, 0, 0}, {1, L});
  auto m = model.text->attention_mask(tokens).to_double_vector();  // [1, 1, 8, 8]
  const int64_t n = L + 1;
  // CLS row (row L): key 0 always; key j visible iff text[j-1] != pad.
  const bool expected_cls[] = {true, true, true, true, false, false, false, false};
  for (int64_t j = 0; j < n; ++j) EXPECT_EQ(m[L * n + j] == 0.0, expected_cls[j]) << "key " << j;
  // Other rows: causal only, padding ignored.
  for (int64_t i = 0; i < L; ++i)
    for (int64_t j = 0; j < n; ++j) EXPECT_EQ(m[i * n + j] == 0.0, j <= i) << i << "," << j;
}

TEST(CocaClsMask, CorrectedValidity) {
  CoCa model(test::micro_config(true));
  const int64_t L = 7, n = L + 1;
  Tensor tokens = Tensor::from_vector(std::vector<int32_t>{48, 5, 49, 0, 0, 0, 0}, {1, L});
  auto m = model.text->attention_mask(tokens).to_double_vector();
  const bool expected_cls[] = {true, true, true, false, false, false, false, true};
  for (int64_t j = 0; j < n; ++j) EXPECT_EQ(m[L * n + j] == 0.0, expected_cls[j]) << "key " << j;
}

// Behaviour: perturbing the pad embedding leaves the CLS output unchanged only in the corrected
// variant (the legacy mask lets the CLS see the first pad position).
TEST(CocaClsMask, PadValueInfluence) {
  for (bool corrected : {true, false}) {
    CoCa model(test::micro_config(corrected), DType::f64);
    Generator gen(5);
    Tensor tokens = test::micro_tokens({4}, 7, 50, gen);
    NoGradGuard ng;
    Tensor before = model.text->forward(tokens).features.clone();
    Tensor row = model.text->token_embedding_weight.slice(0, 0, 1);
    row.copy_(Tensor::randn(row.shape(), gen, DType::f64));
    Tensor after = model.text->forward(tokens).features;
    double diff = 0;
    auto a = before.to_double_vector(), b = after.to_double_vector();
    for (size_t i = 0; i < a.size(); ++i) diff = std::max(diff, std::abs(a[i] - b[i]));
    if (corrected) EXPECT_EQ(diff, 0.0);
    else EXPECT_GT(diff, 1e-6);
  }
}

TEST(CocaWeights, RoundTripBitExact) {
  CoCa a(test::micro_config(), DType::f32), b(test::micro_config(), DType::f32);
  a.initialize(1);
  b.initialize(2);
  const std::string path = (std::filesystem::temp_directory_path() / "coca_roundtrip.safetensors").string();
  save_weights(a, path);
  load_weights(b, path);
  auto pa = a.named_parameters(), pb = b.named_parameters();
  for (size_t i = 0; i < pa.size(); ++i) {
    auto va = pa[i].second.to_vector<float>(), vb = pb[i].second.to_vector<float>();
    ASSERT_EQ(0, std::memcmp(va.data(), vb.data(), va.size() * 4)) << pa[i].first;
  }
  std::filesystem::remove(path);
}

TEST(CocaWeights, WrongShapeAndMissingAreNamed) {
  CoCa a(test::micro_config());
  NamedTensors tensors;
  for (auto& [n, t] : a.named_parameters()) {
    if (n == "text.cls_emb") continue;  // missing
    if (n == "visual.proj") tensors.emplace_back(n, Tensor::zeros({3, 3}));
    else tensors.emplace_back(n, t);
  }
  tensors.emplace_back("not.a.parameter", Tensor::zeros({1}));
  const std::string path = (std::filesystem::temp_directory_path() / "coca_bad.safetensors").string();
  save_safetensors(path, tensors);
  try {
    load_weights(a, path);
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("visual.proj"), std::string::npos) << msg;
    EXPECT_NE(msg.find("text.cls_emb"), std::string::npos) << msg;
    EXPECT_NE(msg.find("not.a.parameter"), std::string::npos) << msg;
  }
  std::filesystem::remove(path);
}

// The independent PyTorch reference (tests/reference/): features, losses and gradients of the
// total loss on its weights and inputs (model_checks.h).
TEST(CocaGolden, MatchesPyTorchReferencePacked) { test::compare_with_golden("micro", false, 11); }
TEST(CocaGolden, MatchesPyTorchReferenceSeparateKV) { test::compare_with_golden("micro_kv", false, 11); }
