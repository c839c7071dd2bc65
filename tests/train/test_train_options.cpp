// coca-train's option checks: values that parse but mean nothing are refused with one line
// naming the flag and the value, before any work starts.
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>

#include "coca/tensor/error.h"
#include "coca/train/options.h"

using namespace coca;
using namespace coca::train;
namespace fs = std::filesystem;

namespace {

// A --train-data directory: the parser only checks that index.json is there.
class TrainOptionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() / ("coca_options_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    std::ofstream(dir / "index.json") << "{}\n";
  }
  void TearDown() override { fs::remove_all(dir); }

  TrainOptions parse(std::vector<std::string> args) const {
    args.insert(args.begin(), {"coca-train", "--train-data", dir.string()});
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    TrainOptions o;
    parse_train_options(static_cast<int>(argv.size()), argv.data(), o);
    return o;
  }
  // parse_train_options on --help: prints the help and returns false.
  bool parse_help() const {
    std::vector<std::string> args{"coca-train", "--help"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    TrainOptions o;
    return parse_train_options(static_cast<int>(argv.size()), argv.data(), o);
  }
  // The error of parsing `args` ("" when it parses).
  std::string error(const std::vector<std::string>& args) const {
    try {
      parse(args);
    } catch (const std::exception& e) {  // coca::Error, or Boost's for a value it cannot parse
      return e.what();
    }
    return "";
  }

  fs::path dir;
};

}  // namespace

TEST_F(TrainOptionsTest, RefusesNonsensicalNumbersNamingFlagAndValue) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"--max-steps", "-5"},         {"--seed", "-1"},           {"--seed", "18446744073709551616"},
      {"--seed", "12abc"},           {"--seed", ""},             {"--save-frequency", "-1"},
      {"--save-every-n-steps", "-2"}, {"--max-minutes", "-1"},   {"--max-minutes", "nan"},
      {"--epochs-cooldown", "-1"},   {"--epochs-cooldown", "2"}, {"--threads", "-3"},
      {"--train-num-samples", "-10"}, {"--warmup", "-1"},        {"--zeroshot-frequency", "-1"},
      {"--grad-clip-norm", "-0.5"},  {"--grad-clip-norm", "nan"}, {"--max-nonfinite", "0"},
      {"--lr-cooldown-end", "-1"},   {"--lr", "inf"},            {"--bucket-mb", "inf"},
      {"--coca-caption-loss-weight", "-1"}, {"--val-frequency", "-1"}, {"--val-num-samples", "-5"}};
  for (const auto& [flag, value] : bad) {
    const std::string msg = error({flag + "=" + value});
    EXPECT_NE(msg.find(flag), std::string::npos) << flag << " " << value << ": '" << msg << "'";
    if (!value.empty()) EXPECT_NE(msg.find(value), std::string::npos) << flag << " " << value << ": '" << msg << "'";
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
  // The spelling with a space, as a user types it.
  EXPECT_NE(error({"--max-steps", "-5"}).find("--max-steps"), std::string::npos);
  EXPECT_NE(error({"--seed", "-1"}).find("--seed"), std::string::npos);
}

TEST_F(TrainOptionsTest, AcceptsTheBoundaries) {
  EXPECT_EQ(error({}), "");
  const TrainOptions o = parse({"--seed", "18446744073709551615", "--max-steps", "0", "--save-frequency", "0",
                                "--epochs", "3", "--epochs-cooldown", "3", "--grad-clip-norm", "0", "--threads", "0"});
  EXPECT_EQ(o.seed, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(o.max_steps, 0);
  EXPECT_EQ(parse({"--seed", "42"}).seed, 42u);
}

TEST_F(TrainOptionsTest, SeedInAConfigFileIsCheckedToo) {
  std::ofstream(dir / "bad.cfg") << "seed = -1\n";
  EXPECT_NE(error({"--config", (dir / "bad.cfg").string()}).find("--seed"), std::string::npos);
}

TEST_F(TrainOptionsTest, ContinueOnSaveErrorIsAnOptInSwitch) {
  EXPECT_FALSE(parse({}).continue_on_save_error);
  const TrainOptions o = parse({"--continue-on-save-error"});
  EXPECT_TRUE(o.continue_on_save_error);
  EXPECT_EQ(o.to_json().at("continue_on_save_error"), true);
}

// OpenCLIP's --aug-cfg spellings as users paste them (the shell has removed one level of quotes).
TEST_F(TrainOptionsTest, AugCfgKeys) {
  TrainOptions o = parse({"--aug-cfg", "scale=(0.08,1.0)", "ratio=[0.5, 2.0]", "interpolation=bicubic"});
  EXPECT_EQ(o.aug_scale_min, 0.08);
  EXPECT_EQ(o.aug_scale_max, 1.0);
  EXPECT_EQ(o.aug_ratio_min, 0.5);
  EXPECT_EQ(o.aug_ratio_max, 2.0);
  EXPECT_EQ(o.interpolation, "bicubic");
  o = parse({"--aug-scale", "0.5,0.6", "--aug-cfg", "scale='(0.3, 0.9)'", "interpolation='bilinear'"});
  EXPECT_EQ(o.aug_scale_min, 0.3);  // --aug-cfg scale= sets what --aug-scale sets
  EXPECT_EQ(o.aug_scale_max, 0.9);
  EXPECT_EQ(o.interpolation, "bilinear");
  o = parse({});
  EXPECT_EQ(o.aug_ratio_min, 3.0 / 4.0);
  EXPECT_EQ(o.interpolation, "bilinear");
  for (const std::string key : {"re_prob", "re_count", "use_timm"}) {
    const std::string msg = error({"--aug-cfg", key + "=0.4"});
    EXPECT_NE(msg.find("--aug-cfg"), std::string::npos) << msg;
    EXPECT_NE(msg.find("'" + key + "'"), std::string::npos) << msg;
  }
  EXPECT_NE(error({"--aug-cfg", "scale=(0,1)"}).find("scale"), std::string::npos);
  EXPECT_NE(error({"--aug-cfg", "scale=0.5"}).find("scale"), std::string::npos);
  EXPECT_NE(error({"--aug-cfg", "interpolation=nearest"}).find("interpolation"), std::string::npos);
  EXPECT_NE(error({"--aug-cfg", "scale"}).find("key=value"), std::string::npos);
}

// OpenCLIP's colour keys: color_jitter=(B,C,S,H) with color_jitter_prob, gray_scale_prob.
TEST_F(TrainOptionsTest, AugCfgColorKeys) {
  TrainOptions o = parse({});
  EXPECT_EQ(o.color_jitter_prob, 0.0);
  EXPECT_EQ(o.gray_scale_prob, 0.0);
  o = parse({"--aug-cfg", "color_jitter=(0.4, 0.3, 0.2, 0.1)", "color_jitter_prob=0.8", "gray_scale_prob='0.2'"});
  EXPECT_EQ(o.color_jitter, (std::array<double, 4>{0.4, 0.3, 0.2, 0.1}));
  EXPECT_EQ(o.color_jitter_prob, 0.8);
  EXPECT_EQ(o.gray_scale_prob, 0.2);
  // Recorded with the run's options (params.json, state.json).
  const nlohmann::json j = o.to_json();
  EXPECT_EQ(j.at("color_jitter"), nlohmann::json({0.4, 0.3, 0.2, 0.1}));
  EXPECT_EQ(j.at("color_jitter_prob"), 0.8);
  EXPECT_EQ(j.at("gray_scale_prob"), 0.2);
  o = parse({"--aug-cfg", "color_jitter=[0,0,0,0.5]", "color_jitter_prob=1"});  // H = 0.5 is allowed
  EXPECT_EQ(o.color_jitter[3], 0.5);
  EXPECT_EQ(parse({"--aug-cfg", "color_jitter=(1,1,1,0)", "color_jitter_prob=0"}).color_jitter_prob, 0.0);
  EXPECT_EQ(parse({"--aug-cfg", "gray_scale_prob=1"}).gray_scale_prob, 1.0);

  // Each refusal names the key; bad values also show the value.
  const std::vector<std::pair<std::vector<std::string>, std::string>> bad = {
      {{"color_jitter=(0.4,0.4,0.4,0.6)", "color_jitter_prob=0.8"}, "color_jitter"},   // hue > 0.5
      {{"color_jitter=(-0.1,0.4,0.4,0.1)", "color_jitter_prob=0.8"}, "color_jitter"},  // negative B
      {{"color_jitter=(0.4,-1,0.4,0.1)", "color_jitter_prob=0.8"}, "color_jitter"},    // negative C
      {{"color_jitter=(0.4,0.4,0.4,-0.1)", "color_jitter_prob=0.8"}, "color_jitter"},  // negative H
      {{"color_jitter=(0.4,0.4,0.4)", "color_jitter_prob=0.8"}, "color_jitter"},       // three values
      {{"color_jitter=(0.4,0.4,0.4,0.1,0.1)", "color_jitter_prob=0.8"}, "color_jitter"},
      {{"color_jitter=0.4", "color_jitter_prob=0.8"}, "color_jitter"},  // OpenCLIP's transform needs four
      {{"color_jitter=(a,0.4,0.4,0.1)", "color_jitter_prob=0.8"}, "color_jitter"},
      {{"color_jitter=(0.4,0.4,0.4,0.1)", "color_jitter_prob=1.5"}, "color_jitter_prob"},
      {{"color_jitter=(0.4,0.4,0.4,0.1)", "color_jitter_prob=-0.1"}, "color_jitter_prob"},
      {{"color_jitter=(0.4,0.4,0.4,0.1)", "color_jitter_prob=(0.5,0.5)"}, "color_jitter_prob"},
      {{"gray_scale_prob=2"}, "gray_scale_prob"},
      {{"gray_scale_prob=nan"}, "gray_scale_prob"},
      {{"gray_scale_prob=x"}, "gray_scale_prob"},
  };
  for (const auto& [words, key] : bad) {
    std::vector<std::string> args{"--aug-cfg"};
    args.insert(args.end(), words.begin(), words.end());
    const std::string msg = error(args);
    EXPECT_NE(msg.find("--aug-cfg " + key + " "), std::string::npos) << words[0] << ": " << msg;
  }
  // Only one of the pair: refused (OpenCLIP fails on the first, silently ignores the second).
  std::string msg = error({"--aug-cfg", "color_jitter_prob=0.8"});
  EXPECT_NE(msg.find("color_jitter_prob needs color_jitter="), std::string::npos) << msg;
  msg = error({"--aug-cfg", "color_jitter=(0.4,0.4,0.4,0.1)"});
  EXPECT_NE(msg.find("color_jitter needs color_jitter_prob="), std::string::npos) << msg;
}

// The quickstart's own config parses, its `aug-cfg = ...` lines add up to the colour settings,
// and --aug-cfg on the command line replaces the file's words (the command line wins).
TEST_F(TrainOptionsTest, QuickstartConfigParses) {
  const std::string cfg = std::string(COCA_SOURCE_DIR) + "/launch/configs/quickstart.cfg";
  TrainOptions o = parse({"--config", cfg});
  EXPECT_EQ(o.model, "coca_tiny");
  EXPECT_EQ(o.color_jitter, (std::array<double, 4>{0.4, 0.4, 0.4, 0.1}));
  EXPECT_EQ(o.color_jitter_prob, 0.8);
  EXPECT_EQ(o.gray_scale_prob, 0.2);
  EXPECT_EQ(o.force_patch_dropout, 0.5);
  o = parse({"--config", cfg, "--aug-cfg", "gray_scale_prob=0.1"});
  EXPECT_EQ(o.color_jitter_prob, 0.0);
  EXPECT_EQ(o.gray_scale_prob, 0.1);
}

// coca-train --help lists the colour keys of --aug-cfg with what they mean.
TEST_F(TrainOptionsTest, HelpListsTheColorKeys) {
  ::testing::internal::CaptureStdout();
  EXPECT_FALSE(parse_help());
  const std::string help = ::testing::internal::GetCapturedStdout();
  for (const char* word : {"--aug-cfg", "color_jitter=(B,C,S,H)", "color_jitter_prob=P", "gray_scale_prob=P",
                           "ColorJitter", "hue"})
    EXPECT_NE(help.find(word), std::string::npos) << word;
}

TEST_F(TrainOptionsTest, FineTuningFlags) {
  const TrainOptions o = parse({"--lock-image", "--lock-image-unlocked-groups", "2", "--lock-text",
                                "--lock-text-unlocked-layers", "1", "--grad-checkpointing", "--force-patch-dropout",
                                "0.5", "--image-mean", "0.5", "0.5", "0.5", "--image-std", "0.2,0.2,0.2"});
  EXPECT_TRUE(o.lock_image && o.lock_text && o.grad_checkpointing);
  EXPECT_EQ(o.lock_image_unlocked_groups, 2);
  EXPECT_EQ(o.lock_text_unlocked_layers, 1);
  EXPECT_EQ(o.force_patch_dropout, 0.5);
  EXPECT_EQ(o.image_mean.size(), 3u);
  EXPECT_EQ(parse({}).force_patch_dropout, -1);  // not given: the config decides
  EXPECT_EQ(parse({"--force-patch-dropout", "0"}).force_patch_dropout, 0);
  EXPECT_NE(error({"--lock-image-unlocked-groups", "1"}).find("--lock-image"), std::string::npos);
  EXPECT_NE(error({"--lock-text-unlocked-layers", "1"}).find("--lock-text"), std::string::npos);
  EXPECT_NE(error({"--force-patch-dropout", "1"}).find("--force-patch-dropout"), std::string::npos);
  EXPECT_NE(error({"--image-mean", "0.5,0.5"}).find("--image-mean"), std::string::npos);
  EXPECT_NE(error({"--image-std", "0.5,0,0.5"}).find("--image-std"), std::string::npos);
}
