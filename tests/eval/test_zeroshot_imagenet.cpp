// The ImageNet zero-shot walkthrough on a few generated images: WordNet-id folders sharded with
// the bundled id and name lists, then coca-eval zeroshot with the bundled class names and OpenAI
// templates on a micro model. The labels must reach the evaluation as ImageNet class indices:
// every mistake the evaluation reports names one of the classes the images came from.
#include <gtest/gtest.h>

#include <cstdlib>
#include <set>

#include <nlohmann/json.hpp>

#include "coca/data/shard.h"
#include "coca/data/shard_index.h"
#include "data/fixtures.h"

using namespace coca;
using coca::testing::jpeg_solid;
using coca::testing::TempDir;
using coca::testing::write_file;
using coca::testing::write_text;
namespace fs = std::filesystem;

namespace {

int run(const std::string& cmd, const std::string& log) {
  const int rc = std::system((cmd + " > " + log + " 2>&1").c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

std::string slurp(const std::string& p) {
  const auto b = coca::testing::read_file(p);
  return std::string(b.begin(), b.end());
}

}  // namespace

TEST(ZeroShotImagenet, WordNetFoldersBundledNamesAndTemplates) {
  TempDir t("zs-imagenet");
  ASSERT_EQ(run(std::string(MAKE_EVAL_FIXTURE_BIN) + " " + t.str("fx"), t.str("fx.log")), 0) << slurp(t.str("fx.log"));
  const fs::path val = t.path() / "val";
  // tench (class 0), goldfish (1), toilet paper (999); two images each.
  const std::vector<std::string> wnids = {"n01440764", "n01443537", "n15075141"};
  for (size_t c = 0; c < wnids.size(); ++c)
    for (int k = 0; k < 2; ++k)
      write_file(val / wnids[c] / ("ILSVRC2012_val_0000000" + std::to_string(c * 2 + k) + ".JPEG"),
                 jpeg_solid(40, 36, static_cast<uint8_t>(60 * c + 20 * k), 90, static_cast<uint8_t>(200 - 50 * c)));
  const std::string shards = t.str("shards");
  ASSERT_EQ(run(std::string(COCA_SHARD_BIN) + " --format folder --input " + val.string() +
                    " --class-ids imagenet1k_wnids --classnames imagenet1k --quiet --output " + shards,
                t.str("shard.log")),
            0)
      << slurp(t.str("shard.log"));
  const ShardIndex idx = ShardIndex::load(shards);
  ASSERT_EQ(idx.classnames.size(), 1000u);
  ShardReader r(idx.shard_path(shards, 0));
  std::vector<int32_t> labels(6);
  r.read_labels(0, 6, labels.data());
  EXPECT_EQ(labels, (std::vector<int32_t>{0, 0, 1, 1, 999, 999}));

  const std::string model = " --model-config " + t.str("fx/model.json") + " --weights " +
                            t.str("fx/model.safetensors") + " --tokenizer " + t.str("fx/bpe.txt.gz");
  const std::string eval = std::string(COCA_EVAL_BIN) + " zeroshot" + model + " --data " + shards;
  ASSERT_EQ(run(eval + " --classnames imagenet1k --templates openai --top-confused 1000 --batch-size 4 --output " +
                    t.str("z.json"),
                t.str("z.log")),
            0)
      << slurp(t.str("z.log"));
  const auto j = nlohmann::json::parse(slurp(t.str("z.json")));
  EXPECT_EQ(j.at("classes").get<int64_t>(), 1000);
  EXPECT_EQ(j.at("images").get<int64_t>(), 6);
  const std::set<std::string> present = {"tench", "goldfish", "toilet paper"};
  int64_t mistakes = 0;
  for (const auto& c : j.at("confused")) {
    EXPECT_TRUE(present.count(c.at("true").get<std::string>())) << c.dump();
    mistakes += c.at("count").get<int64_t>();
  }
  EXPECT_EQ(mistakes, 6 - std::llround(j.at("top1").get<double>() * 6)) << j.dump(1);

  // Names whose count differs from the shards' classes, an unknown bundled name: one clear error.
  write_text(t.path() / "three.txt", "tench\ngoldfish\ntoilet paper\n");
  EXPECT_NE(run(eval + " --classnames " + t.str("three.txt"), t.str("e1.log")), 0);
  EXPECT_NE(slurp(t.str("e1.log")).find("lists 3 classes but the shards of " + shards + " have 1000"),
            std::string::npos)
      << slurp(t.str("e1.log"));
  EXPECT_NE(run(eval + " --templates no_such_set", t.str("e2.log")), 0);
  EXPECT_NE(slurp(t.str("e2.log")).find("--templates no_such_set: neither a file nor a bundled templates list"),
            std::string::npos)
      << slurp(t.str("e2.log"));
  EXPECT_EQ(run(std::string(COCA_EVAL_BIN) + " zeroshot --help", t.str("help.log")), 0) << slurp(t.str("help.log"));
  EXPECT_NE(slurp(t.str("help.log")).find("imagenet1k"), std::string::npos);
}
