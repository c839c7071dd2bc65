// The CLIP tokenizer found where users have it: with no --tokenizer and a shard index that names
// none, a model with OpenCLIP's 49,408-token vocabulary takes OpenCLIP's
// bpe_simple_vocab_16e6.txt.gz from $COCA_DATA_DIR, else from an installed open_clip Python
// package, saying which file (and its sha256); with neither, one line says where to put it. A
// model with another vocabulary is not given OpenCLIP's file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "coca/data/bundled.h"
#include "coca/data/sha256.h"
#include "coca/data/shard_index.h"
#include "coca/eval/common.h"
#include "coca/tensor/error.h"

using namespace coca;
namespace fs = std::filesystem;

namespace {

class ClipTokenizer : public ::testing::Test {
 protected:
  void SetUp() override {
    root = fs::temp_directory_path() / ("coca_clip_tok_" + std::to_string(::getpid()));
    fs::create_directories(root / "data");
    fs::create_directories(root / "site" / "open_clip");
    std::ofstream(root / "site" / "open_clip" / "__init__.py") << "raise ImportError('must not be imported')\n";
    for (const char* env : {"COCA_DATA_DIR", "PYTHONPATH"}) saved.emplace_back(env, std::getenv(env) ? std::getenv(env) : "");
    unsetenv("COCA_DATA_DIR");
    setenv("PYTHONPATH", (root / "nothing").c_str(), 1);
  }
  void TearDown() override {
    for (auto& [k, v] : saved) v.empty() ? unsetenv(k.c_str()) : setenv(k.c_str(), v.c_str(), 1);
    fs::remove_all(root);
  }
  std::string resolve(int64_t vocab, std::string* note) const {
    return eval::resolve_tokenizer("", ShardIndex(), (root / "shards").string(), "zero-shot", vocab, note);
  }
  static void write_file(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }
  fs::path root;
  std::vector<std::pair<std::string, std::string>> saved;
};

}  // namespace

TEST_F(ClipTokenizer, FromCocaDataDirThenFromTheOpenClipPackage) {
  std::string note;
  // Nothing anywhere: one line that says where to put the file and where it looked.
  std::string msg;
  try {
    resolve(49408, &note);
  } catch (const Error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("the model's 49,408-token vocabulary is OpenCLIP's: put OpenCLIP's bpe_simple_vocab_16e6.txt.gz "
                     "in $COCA_DATA_DIR"), std::string::npos) << msg;
  EXPECT_NE(msg.find("<no open_clip package for python3>"), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;

  // An installed open_clip package (found on python3's path, never imported).
  const fs::path pkg_file = root / "site" / "open_clip" / kClipTokenizerFile;
  write_file(pkg_file, "package copy");
  setenv("PYTHONPATH", (root / "site").c_str(), 1);
  EXPECT_EQ(resolve(49408, &note), pkg_file.string());
  EXPECT_NE(note.find("from the open_clip Python package: " + pkg_file.string() + " (sha256 " +
                      sha256_file(pkg_file.string()) + ")"),
            std::string::npos)
      << note;

  // $COCA_DATA_DIR comes first.
  const fs::path data_file = root / "data" / kClipTokenizerFile;
  write_file(data_file, "data dir copy");
  setenv("COCA_DATA_DIR", (root / "data").c_str(), 1);
  EXPECT_EQ(resolve(49408, &note), data_file.string());
  EXPECT_NE(note.find("from $COCA_DATA_DIR"), std::string::npos) << note;

  // Another vocabulary never gets OpenCLIP's file: the old one-line error.
  try {
    resolve(4096, &note);
    ADD_FAILURE() << "a 4096-token model took the CLIP tokenizer";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no tokenizer given (--tokenizer) and"), std::string::npos) << e.what();
  }
  // --tokenizer wins over everything.
  EXPECT_EQ(eval::resolve_tokenizer("mine.txt.gz", ShardIndex(), "x", "zero-shot", 49408, &note), "mine.txt.gz");
}
