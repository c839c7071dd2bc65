// OpenCLIP command lines through coca-train's parser: the examples of OpenCLIP's README (paths
// replaced by shard sets) parse, or are refused with one line naming the nearest supported
// choice; flags that mean nothing here leave a note; the defaults that differ from OpenCLIP's
// are listed once.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "coca/data/shard_index.h"
#include "coca/tensor/error.h"
#include "coca/train/options.h"

using namespace coca;
using namespace coca::train;
namespace fs = std::filesystem;

namespace {

class OpenClipFlags : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() / ("coca_openclip_flags_" + std::to_string(::getpid()));
    fs::create_directories(dir / "train");
    std::ofstream(dir / "train" / "index.json") << "{}\n";  // the parser only looks for it
    fs::create_directories(dir / "val");
    ShardIndex().save((dir / "val").string());  // --val-data is read (it must not be a classification set)
  }
  void TearDown() override { fs::remove_all(dir); }

  // A command line as a shell would split it (no quotes inside words), with DATA and VAL
  // replaced by the shard sets.
  std::vector<std::string> words(const std::string& line) const {
    std::istringstream in(line);
    std::vector<std::string> out{"coca-train"};
    for (std::string w; in >> w;) {
      for (auto [key, path] : {std::pair<std::string, fs::path>{"DATA", dir / "train"}, {"VAL", dir / "val"}})
        if (auto at = w.find(key); at != std::string::npos) w.replace(at, key.size(), path.string());
      out.push_back(w);
    }
    return out;
  }
  TrainOptions parse(const std::string& line) const {
    std::vector<std::string> args = words(line);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    TrainOptions o;
    parse_train_options(static_cast<int>(argv.size()), argv.data(), o);
    return o;
  }
  std::string error(const std::string& line) const {
    try {
      parse(line);
    } catch (const std::exception& e) {
      return e.what();
    }
    return "";
  }
  static bool has_note(const TrainOptions& o, const std::string& text) {
    for (const std::string& n : o.notes)
      if (n.find(text) != std::string::npos) return true;
    return false;
  }
  fs::path dir;
};

}  // namespace

// OpenCLIP's README, "Single-process running code" (a CSV dataset; --imagenet-val given). Its
// model, RN50 (a ResNet CLIP), is not one of the model configs here: refused, naming them; with
// a ViT CLIP or a CoCa config the rest of the line runs.
TEST_F(OpenClipFlags, ReadmeSingleProcessExample) {
  const std::string line =
      "--save-frequency 1 --zeroshot-frequency 1 --report-to tensorboard --train-data=DATA --val-data=VAL "
      "--csv-img-key filepath --csv-caption-key title --imagenet-val=/path/to/imagenet/root/val/ --warmup 10000 "
      "--batch-size=128 --lr=1e-3 --wd=0.1 --epochs=30 --workers=8 --model ";
  const std::string e = error(line + "RN50");
  EXPECT_NE(e.find("model 'RN50': no such config file"), std::string::npos) << e;
  EXPECT_NE(e.find("(the model configs here: ViT-B-16, "), std::string::npos) << e;
  EXPECT_NE(e.find(", coca_ViT-B-32, coca_ViT-L-14, coca_base, coca_tiny)"), std::string::npos) << e;
  const TrainOptions o = parse(line + "coca_ViT-B-32");
  EXPECT_EQ(parse(line + "ViT-B-32").model, "ViT-B-32");  // OpenCLIP's CLIP configs are here
  EXPECT_EQ(o.batch_size, 128);
  EXPECT_EQ(o.warmup, 10000);
  EXPECT_DOUBLE_EQ(o.wd, 0.1);
  EXPECT_EQ(o.epochs, 30);
  EXPECT_TRUE(o.report_tensorboard);
  EXPECT_EQ(o.zeroshot_frequency, 0);
  EXPECT_TRUE(has_note(o, "--zeroshot-frequency 1 is ignored with --imagenet-val"));
  EXPECT_TRUE(has_note(o, "--csv-img-key filepath (OpenCLIP) is ignored: CSV tables are read by coca-shard"));
  EXPECT_TRUE(has_note(o, "--imagenet-val /path/to/imagenet/root/val/ (OpenCLIP) is ignored: zero-shot runs on "
                          "--zeroshot-data"));
  // Every default it left is listed on one line; the ones it set are not.
  ASSERT_FALSE(o.notes.empty());
  const std::string& d = o.notes.back();
  EXPECT_NE(d.find("defaults that differ from OpenCLIP's and were not set: "), std::string::npos) << d;
  EXPECT_NE(d.find("--log-every-n-steps 10 (OpenCLIP: 100)"), std::string::npos) << d;
  EXPECT_EQ(d.find("--epochs"), std::string::npos) << d;
  EXPECT_EQ(d.find("--warmup"), std::string::npos) << d;
}

// "Multi-node" (srun) example: --local-loss --gather-with-grad describe what the loss does. (Its
// ViT-B-32 is a CLIP config, not one of the configs here; coca_ViT-B-32 in its place.)
TEST_F(OpenClipFlags, ReadmeMultiNodeExampleWithLocalLoss) {
  const TrainOptions o = parse(
      "--save-frequency 1 --report-to tensorboard --train-data=DATA --warmup 2000 --batch-size=256 --epochs=32 "
      "--workers=8 --model coca_ViT-B-32 --name ViT-B-32-Vanilla --seed 0 --local-loss --gather-with-grad");
  EXPECT_EQ(o.batch_size, 256);
  for (const std::string& n : o.notes) EXPECT_EQ(n.find("loss"), std::string::npos) << n;  // accepted silently
}

// "Multi-GPU" torchrun example: webdataset and fp16 autocast. --precision amp is refused with
// the nearest choice; with amp_bf16 the same line runs.
TEST_F(OpenClipFlags, ReadmeWebDatasetExampleWithAmp) {
  const std::string line =
      "--train-data DATA --train-num-samples 10968539 --dataset-type webdataset --batch-size 320 --workers 4 "
      "--imagenet-val /data/imagenet/validation/ --precision ";
  const std::string e = error(line + "amp");
  EXPECT_NE(e.find("--precision amp (OpenCLIP) is not supported"), std::string::npos) << e;
  EXPECT_NE(e.find("the nearest choice here is --precision amp_bf16"), std::string::npos) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  const TrainOptions o = parse(line + "amp_bfloat16");
  EXPECT_EQ(o.precision, "amp_bf16");
  EXPECT_EQ(o.train_num_samples, 10968539);
  EXPECT_TRUE(has_note(o, "--dataset-type webdataset (OpenCLIP) is ignored"));
}

// "Fine-tuning CoCa" example (its --report-to wandb is refused by coca-train's own option).
TEST_F(OpenClipFlags, ReadmeCocaFineTuneExample) {
  const std::string line =
      "--dataset-type csv --train-data DATA --warmup 1000 --batch-size 128 --lr 1e-5 --wd 0.1 --epochs 1 "
      "--workers 3 --model coca_ViT-L-14 --coca-contrastive-loss-weight 0 --coca-caption-loss-weight 1 "
      "--log-every-n-steps 100";
  const TrainOptions o = parse(line);
  EXPECT_DOUBLE_EQ(o.coca_contrastive_loss_weight, 0.0);
  EXPECT_DOUBLE_EQ(o.lr, 1e-5);
  EXPECT_NE(error(line + " --report-to wandb").find("--report-to wandb is not supported"), std::string::npos);
}

TEST_F(OpenClipFlags, MappedIgnoredAndRefused) {
  const TrainOptions o = parse(
      "--train-data DATA --skip-scheduler --delete-previous-checkpoint --image-interpolation bicubic --opt adamw "
      "--torchcompile --use-bn-sync --text-layer-decay 1.0 --lr-cooldown-power 1 --save-most-recent");
  EXPECT_EQ(o.lr_scheduler, "const");
  EXPECT_EQ(o.warmup, 0);
  EXPECT_EQ(o.keep_checkpoints, 1);
  EXPECT_EQ(o.interpolation, "bicubic");
  EXPECT_TRUE(has_note(o, "--torchcompile (OpenCLIP) is ignored: a compiled program"));
  EXPECT_TRUE(has_note(o, "--use-bn-sync (OpenCLIP) is ignored: the models have no batch norm"));
  struct Case {
    const char* args;
    const char* says;
  } refused[] = {
      {"--siglip", "--siglip (OpenCLIP) is not supported: it would change what is trained; the nearest choice here "
                   "is the softmax contrastive loss"},
      {"--distill-model ViT-L-14", "--distill-model ViT-L-14 (OpenCLIP) is not supported"},
      {"--precision fp16", "--precision fp16 (OpenCLIP) is not supported"},
      {"--precision pure_bf16", "the nearest choice here is --precision amp_bf16"},
      {"--opt timm/lamb", "--opt timm/lamb (OpenCLIP) is not supported: the nearest choice here is --opt adamw"},
      {"--image-layer-decay 0.65", "--image-layer-decay 0.65 (OpenCLIP) is not supported"},
      {"--use-naflex", "the nearest choice here is fixed-size images"},
      {"--force-image-size 336", "--model-config FILE with vision_cfg.image_size changed"},
      {"--lr-cooldown-power 2", "--lr-cooldown-power 1 (a linear cooldown)"},
      {"--fsdp", "the nearest choice here is --zero1"},
  };
  for (const Case& c : refused) {
    const std::string e = error(std::string("--train-data DATA ") + c.args);
    EXPECT_NE(e.find(c.says), std::string::npos) << c.args << ": " << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  }
}
