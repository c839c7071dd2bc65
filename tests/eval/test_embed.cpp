// coca-eval embed end to end: golden inputs in, features and losses out, compared with the
// PyTorch reference; bad input gives one error line and a non-zero exit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <algorithm>
#include <map>

#include "coca/eval/h5_tensor.h"
#include "coca/tensor/safetensors.h"

using namespace coca;
namespace fs = std::filesystem;

namespace {

struct Outcome {
  int status;
  std::string output;
};

Outcome run(const std::string& args) {
  const std::string cmd = std::string(COCA_EVAL_BIN) + " " + args + " 2>&1";
  Outcome r{0, ""};
  FILE* p = popen(cmd.c_str(), "r");
  char buf[512];
  while (fgets(buf, sizeof buf, p)) r.output += buf;
  r.status = pclose(p);
  return r;
}

double rel_err(const Tensor& a, const Tensor& b) {
  auto x = a.to_double_vector(), y = b.to_double_vector();
  EXPECT_EQ(x.size(), y.size());
  double d = 0, s = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    d = std::max(d, std::abs(x[i] - y[i]));
    s = std::max(s, std::abs(y[i]));
  }
  return d / s;
}

}  // namespace

TEST(Embed, MatchesGoldenFeaturesAndLosses) {
  const std::string g = COCA_GOLDEN_DIR;
  std::map<std::string, Tensor> io;
  for (auto& [n, t] : load_safetensors(g + "/micro_io.safetensors")) io[n] = t;
  const fs::path dir = fs::temp_directory_path() / "coca_embed_test";
  fs::create_directories(dir);
  {
    h5::Writer w((dir / "batch.h5").string());
    w.write("images", io.at("images"));
    w.write("tokens", io.at("tokens"));
    w.close();
  }
  Outcome r = run("embed --model-config " + g + "/micro.json --weights " + g + "/micro_weights.safetensors --input " +
              (dir / "batch.h5").string() + " --output " + (dir / "out.h5").string() + " --logits");
  ASSERT_EQ(r.status, 0) << r.output;
  const std::string out = (dir / "out.h5").string();
  EXPECT_LE(rel_err(h5::read_tensor(out, "image_features"), io.at("image_features")), 1e-4);
  EXPECT_LE(rel_err(h5::read_tensor(out, "text_features"), io.at("text_features")), 1e-4);
  EXPECT_LE(rel_err(h5::read_tensor(out, "caption_logits"), io.at("caption_logits")), 1e-4);
  EXPECT_LE(rel_err(h5::read_tensor(out, "contrastive_loss"), io.at("contrastive_loss")), 1e-4);
  EXPECT_LE(rel_err(h5::read_tensor(out, "caption_loss"), io.at("caption_loss")), 1e-4);
  fs::remove_all(dir);
}

TEST(Embed, MissingDatasetIsOneClearLine) {
  const std::string g = COCA_GOLDEN_DIR;
  const fs::path dir = fs::temp_directory_path() / "coca_embed_bad";
  fs::create_directories(dir);
  {
    h5::Writer w((dir / "batch.h5").string());
    w.write("images", Tensor::zeros({3, 3, 16, 16}));
    w.close();
  }
  Outcome r = run("embed --model-config " + g + "/micro.json --weights " + g + "/micro_weights.safetensors --input " +
              (dir / "batch.h5").string() + " --output " + (dir / "out.h5").string());
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("no dataset 'tokens'"), std::string::npos) << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  EXPECT_FALSE(fs::exists(dir / "out.h5"));
  fs::remove_all(dir);
}

TEST(Embed, WrongWeightsShapeNamesTensor) {
  const std::string g = COCA_GOLDEN_DIR;
  // micro_kv weights (vision width 24) into the micro config (width 16)
  Outcome r = run("embed --model-config " + g + "/micro.json --weights " + g +
              "/micro_kv_weights.safetensors --input /nonexistent.h5 --output /tmp/x.h5");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("visual.conv1.weight"), std::string::npos) << r.output;
}

TEST(Embed, TorchCheckpointsGiveTheSameEmbeddingsAsSafetensors) {
  const std::string g = COCA_GOLDEN_DIR;
  std::map<std::string, Tensor> io;
  for (auto& [n, t] : load_safetensors(g + "/micro_io.safetensors")) io[n] = t;
  const fs::path dir = fs::temp_directory_path() / "coca_embed_torch";
  fs::create_directories(dir);
  {
    h5::Writer w((dir / "batch.h5").string());
    w.write("images", io.at("images"));
    w.write("tokens", io.at("tokens"));
    w.close();
  }
  auto embed = [&](const std::string& weights, const std::string& out) {
    Outcome r = run("embed --model-config " + g + "/micro.json --weights " + weights + " --input " +
                    (dir / "batch.h5").string() + " --output " + (dir / out).string());
    EXPECT_EQ(r.status, 0) << r.output;
    return (dir / out).string();
  };
  const std::string st = embed(g + "/micro_weights.safetensors", "st.h5");
  // The same weights as torch.save wrote them: a state dict, and a DDP training checkpoint.
  for (const char* file : {"micro.bin", "micro.pt"}) {
    const std::string out = embed(g + "/torch/" + file, std::string(file) + ".h5");
    for (const char* name : {"image_features", "text_features"}) {
      EXPECT_EQ(h5::read_tensor(out, name).to_double_vector(), h5::read_tensor(st, name).to_double_vector())
          << file << " " << name;
      EXPECT_LE(rel_err(h5::read_tensor(out, name), io.at(name)), 1e-4) << file << " " << name;
    }
  }
  // A damaged archive: one error line naming the file, non-zero exit.
  Outcome r = run("embed --model-config " + g + "/micro.json --weights " + g + "/torch/truncated.bin --input " +
                  (dir / "batch.h5").string() + " --output " + (dir / "bad.h5").string());
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("torch/truncated.bin"), std::string::npos) << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  fs::remove_all(dir);
}
