// metrics.jsonl after a resume holds each step once: records of steps after the checkpoint
// move to metrics.jsonl.replaced (nothing written is lost), then the run appends.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <unistd.h>

#include "coca/train/run_log.h"

namespace fs = std::filesystem;
using coca::train::MetricsFile;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST(MetricsFile, ResumeMovesTheStepsAfterTheCheckpointAside) {
  const fs::path dir = fs::temp_directory_path() / ("coca-run-log-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string path = (dir / "metrics.jsonl").string();
  {
    MetricsFile m(path);
    for (int s = 1; s <= 6; ++s) m.write({{"step", s}, {"loss", 10 - s}});
    m.write({{"note", "no step"}});
  }
  { std::ofstream(path, std::ios::app) << "{\"step\": 7, \"lo"; }  // cut short by a kill
  {
    MetricsFile m(path, 4);
    m.write({{"step", 5}, {"loss", 0.5}});
  }
  const std::string kept = slurp(path), moved = slurp(path + ".replaced");
  EXPECT_NE(kept.find("\"step\":4"), std::string::npos);
  EXPECT_NE(kept.find("no step"), std::string::npos);
  EXPECT_EQ(kept.find("\"step\":6"), std::string::npos);
  EXPECT_EQ(kept.find("{\"loss\":5,\"step\":5}"), std::string::npos) << kept;  // the old step 5 left
  EXPECT_NE(kept.find("{\"loss\":0.5,\"step\":5}"), std::string::npos) << kept;  // the new one is there
  EXPECT_NE(moved.find("{\"loss\":5,\"step\":5}"), std::string::npos) << moved;
  EXPECT_NE(moved.find("\"step\":6"), std::string::npos);
  EXPECT_NE(moved.find("\"step\": 7, \"lo"), std::string::npos);
  // Without a resume nothing moves.
  { MetricsFile m(path); }
  EXPECT_EQ(slurp(path), kept);
  fs::remove_all(dir);
}
