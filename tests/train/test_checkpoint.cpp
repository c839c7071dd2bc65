// Checkpoint publishing, pruning, leftovers of interrupted saves and prunes, what --resume
// accepts, and the one-line mismatch errors of loading weights or optimizer state.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "coca/model/weights.h"
#include "coca/train/checkpoint.h"

using namespace coca;
using namespace coca::train;
namespace fs = std::filesystem;

namespace {

// A fresh <tmp>/coca_ckpt_<pid>_<test>/ holding run/checkpoints/, removed afterwards.
class CheckpointDir : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    base = fs::temp_directory_path() / ("coca_ckpt_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(base);
    run = base / "run";
    root = run / "checkpoints";
    fs::create_directories(root);
  }
  void TearDown() override { fs::remove_all(base); }

  static void write(const fs::path& p, const std::string& text) {
    std::ofstream(p) << text;
    ASSERT_TRUE(fs::is_regular_file(p)) << p;
  }
  static std::string read(const fs::path& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  // The files the trainer writes into <name>.tmp; `tag` marks which save wrote them.
  void stage(const std::string& name, const std::string& tag = "", bool complete = true) const {
    const fs::path tmp = root / (name + ".tmp");
    fs::create_directories(tmp);
    for (const std::string& f : checkpoint_files())
      if (complete || f != "optimizer.safetensors") write(tmp / f, tag.empty() ? name : tag);
  }
  void save(int64_t step, int keep, const std::string& tag = "") const {
    stage(checkpoint_name(step), tag);
    publish_checkpoint(root.string(), checkpoint_name(step), step, keep);
  }
  std::vector<std::string> entries() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(root)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }
  std::string latest() const { return read(root / "latest"); }

  fs::path base, run, root;
};

using Names = std::vector<std::string>;

}  // namespace

TEST(CheckpointNames, StepRoundTripsAndOnlyPublishedNamesParse) {
  EXPECT_EQ(checkpoint_name(123), "step_000123");
  EXPECT_EQ(checkpoint_step("step_000123"), 123);
  EXPECT_EQ(checkpoint_step(checkpoint_name(12345678)), 12345678);
  for (const char* bad : {"step_000123.tmp", "step_000123.deleting", "latest", "latest.tmp", "step_", "step_12a", ""})
    EXPECT_EQ(checkpoint_step(bad), -1) << bad;
}

TEST_F(CheckpointDir, PublishSyncsRenamesAndPointsLatest) {
  stage("step_000010");
  fs::create_directories(root / "step_000010.tmp" / "sub");  // nested directories are synced too
  write(root / "step_000010.tmp" / "sub" / "extra.bin", "x");
  publish_checkpoint(root.string(), "step_000010", 10, 3);
  EXPECT_EQ(entries(), (Names{"latest", "step_000010"}));
  for (const std::string& f : checkpoint_files()) EXPECT_EQ(read(root / "step_000010" / f), "step_000010") << f;
  EXPECT_EQ(latest(), "step_000010\n");
  EXPECT_EQ(resolve_resume("latest", run.string()), (root / "step_000010").string());
}

TEST_F(CheckpointDir, PublishRefusesAWrongStepOrAMissingTmp) {
  stage("step_000010");
  EXPECT_THROW(publish_checkpoint(root.string(), "step_000010", 11, 3), Error);
  EXPECT_THROW(publish_checkpoint(root.string(), "step_000012", 12, 3), Error);  // nothing staged
  EXPECT_FALSE(fs::exists(root / "latest"));
}

TEST_F(CheckpointDir, SyncOfAMissingDirectoryNamesIt) {
  try {
    sync_directory_tree((base / "nope").string());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find((base / "nope").string()), std::string::npos) << e.what();
  }
}

TEST_F(CheckpointDir, PruneKeepsTheNewestByStepNotByName) {
  save(999999, 2);
  save(1000000, 2);
  save(1000001, 2);  // "step_1000000" sorts before "step_999999" by name
  EXPECT_EQ(entries(), (Names{"latest", "step_1000000", "step_1000001"}));
  EXPECT_EQ(latest(), "step_1000001\n");
}

// --keep-checkpoints 1 --resume step_4 in a run directory that went on to step 8: every new save
// must survive, `latest` must name it, and the rolled-back timeline's step 8 stays until this
// run writes its own step 8.
TEST_F(CheckpointDir, RolledBackResumeKeepsItsOwnSaves) {
  save(4, 3, "old");
  save(8, 3, "old");
  ASSERT_EQ(latest(), "step_000008\n");
  save(5, 1, "new");
  EXPECT_EQ(entries(), (Names{"latest", "step_000005", "step_000008"}));
  EXPECT_EQ(latest(), "step_000005\n");
  EXPECT_EQ(resolve_resume("latest", run.string()), (root / "step_000005").string());
  save(6, 1, "new");
  EXPECT_EQ(entries(), (Names{"latest", "step_000006", "step_000008"}));
  EXPECT_EQ(latest(), "step_000006\n");
  save(8, 1, "new");  // replaces the old timeline's step 8
  EXPECT_EQ(entries(), (Names{"latest", "step_000008"}));
  EXPECT_EQ(read(root / "step_000008" / "state.json"), "new");
  EXPECT_EQ(latest(), "step_000008\n");
}

TEST_F(CheckpointDir, ResavingTheSameStepReplacesIt) {
  save(3, 2, "first");
  save(3, 2, "second");
  EXPECT_EQ(entries(), (Names{"latest", "step_000003"}));
  EXPECT_EQ(read(root / "step_000003" / "model.safetensors"), "second");
}

// Leftovers of a kill -9: a prune's half-deleted step_3.deleting (it may still look complete), a
// save's step_5.tmp (complete but never published) and latest.tmp. The start of the next run
// removes them, one line each, and leaves everything else alone.
TEST_F(CheckpointDir, LeftoversAreCleanedAtStartAndNeverResumed) {
  save(2, 3);
  stage("step_000003");
  fs::rename(root / "step_000003.tmp", root / "step_000003.deleting");
  stage("step_000005");
  write(root / "latest.tmp", "step_000005\n");
  write(root / "notes.txt", "mine");

  // Never chosen by --resume, whichever way they are named.
  EXPECT_EQ(resolve_resume("latest", run.string()), (root / "step_000002").string());
  EXPECT_THROW(resolve_resume((root / "step_000005.tmp").string(), run.string()), Error);
  EXPECT_THROW(resolve_resume((root / "step_000003.deleting").string(), run.string()), Error);
  write(root / "latest", "step_000003.deleting\n");
  EXPECT_THROW(resolve_resume("latest", run.string()), Error);
  write(root / "latest", "step_000003\n");  // a name whose directory was being deleted
  EXPECT_THROW(resolve_resume("latest", run.string()), Error);
  write(root / "latest", "step_000002\n");

  ::testing::internal::CaptureStdout();
  clean_checkpoint_dir(root.string());
  const std::string out = ::testing::internal::GetCapturedStdout();
  EXPECT_EQ(entries(), (Names{"latest", "notes.txt", "step_000002"}));
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 3) << out;
  for (const char* name : {"step_000003.deleting", "step_000005.tmp", "latest.tmp"})
    EXPECT_NE(out.find((root / name).string()), std::string::npos) << out;

  clean_checkpoint_dir((base / "no_such_run").string());  // a first run has no directory yet
}

TEST_F(CheckpointDir, DiscardRemovesAFailedSave) {
  save(1, 3);
  stage("step_000002", "", /*complete=*/false);  // the save failed half-way
  discard_checkpoint_tmp(root.string(), "step_000002");
  EXPECT_EQ(entries(), (Names{"latest", "step_000001"}));
  discard_checkpoint_tmp(root.string(), "step_000002");  // nothing there: fine
  EXPECT_EQ(latest(), "step_000001\n");
}

TEST_F(CheckpointDir, IncompleteCheckpointsAreRefusedInOneLine) {
  save(9, 3);
  fs::remove(root / "step_000009" / "optimizer.safetensors");
  try {
    resolve_resume("latest", run.string());
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("optimizer.safetensors"), std::string::npos) << msg;
    EXPECT_NE(msg.find("step_000009"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
  save(10, 3);
  fs::remove(root / "step_000010" / "model.safetensors");
  try {
    resolve_resume((root / "step_000010").string(), run.string());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.safetensors"), std::string::npos) << e.what();
  }
  save(11, 3);
  const std::string slash = (root / "step_000011").string() + "/";
  EXPECT_EQ(resolve_resume(slash, run.string()), slash);
  EXPECT_THROW(resolve_resume((root / "step_000012").string(), run.string()), Error);
}

TEST_F(CheckpointDir, JsonIsWrittenWhole) {
  write_json_atomic((base / "params.json").string(), {{"a", 1}});
  EXPECT_EQ(read_json((base / "params.json").string()).at("a"), 1);
  EXPECT_FALSE(fs::exists(base / "params.json.tmp"));
}

// ---- one-line mismatch errors ------------------------------------------------------------

namespace {

class ManyParameters : public nn::Module {
 public:
  explicit ManyParameters(int n) {
    for (int i = 0; i < n; ++i) register_parameter("p" + std::to_string(i), Tensor::zeros({2}));
  }
};

std::vector<std::string> numbered(const std::string& prefix, int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back(prefix + std::to_string(i));
  return out;
}

}  // namespace

TEST(MismatchMessage, NamesAFewOfEachKindAndCountsTheRest) {
  const std::string msg = describe_mismatch(numbered("miss", 2), numbered("extra", 1), numbered("shape", 300));
  EXPECT_NE(msg.find("missing miss0, missing miss1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unexpected extra0"), std::string::npos) << msg;
  EXPECT_NE(msg.find("wrongly shaped shape4"), std::string::npos) << msg;  // 8 names in all
  EXPECT_EQ(msg.find("shape5"), std::string::npos) << msg;
  EXPECT_NE(msg.find("... and 295 more (0 missing, 0 unexpected, 295 wrongly shaped)"), std::string::npos) << msg;
  EXPECT_LT(msg.size(), 300u) << msg;
  // Few enough to name: no tail.
  EXPECT_EQ(describe_mismatch({"a"}, {}, {"b (file [1], model [2])"}),
            "missing a, wrongly shaped b (file [1], model [2])");
}

TEST(MismatchMessage, LoadWeightsOfAWrongConfigIsOneShortLine) {
  ManyParameters model(200);
  NamedTensors file;
  for (int i = 0; i < 150; ++i) file.emplace_back("p" + std::to_string(i), Tensor::zeros({i < 100 ? 2 : 3}));
  file.emplace_back("stray", Tensor::zeros({1}));
  try {
    load_weights(model, file, "w.safetensors");
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos);
    EXPECT_LT(msg.size(), 600u) << msg;
    EXPECT_NE(msg.find("w.safetensors"), std::string::npos) << msg;
    EXPECT_NE(msg.find("unexpected stray"), std::string::npos) << msg;
    // 50 missing (p150..), 1 unexpected, 50 wrongly shaped (p100..): 8 named, 93 counted.
    EXPECT_NE(msg.find("... and 93 more (46 missing, 0 unexpected, 47 wrongly shaped)"), std::string::npos) << msg;
  }
}

TEST(MismatchMessage, OptimizerStateOfAWrongConfigIsOneShortLine) {
  ManyParameters model(100);
  AdamW opt(model.named_parameters(), {});
  try {
    restore_optimizer(opt, {}, "opt.safetensors");
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_LT(msg.size(), 400u) << msg;
    EXPECT_NE(msg.find("... and 193 more (193 missing, 0 unexpected, 0 wrongly shaped)"), std::string::npos) << msg;
  }
}
