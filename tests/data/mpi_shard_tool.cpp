// Helper for the MPI coca-shard test (mpi_shard_test.sh):
//   mpi_shard_tool make DIR          writes DIR/imgs/* and DIR/list.tsv (some inputs bad)
//   mpi_shard_tool compare ONE MANY  checks that MANY (an mpirun output) holds the same
//                                    samples, in the same order, and the same skip counts
#include <cstdio>
#include <nlohmann/json.hpp>

#include "coca/data/shard.h"
#include "coca/data/shard_index.h"
#include "data/fixtures.h"

using namespace coca;
namespace fs = std::filesystem;

static std::vector<std::string> captions_of(const std::string& dir) {
  const ShardIndex idx = ShardIndex::load(dir);
  std::vector<std::string> out;
  for (size_t i = 0; i < idx.shards.size(); ++i) {
    ShardReader r(idx.shard_path(dir, i));
    COCA_CHECK(r.size() == idx.shards[i].samples, "shard ", i, " size differs from the index");
    for (auto& c : r.read_captions(0, r.size())) out.push_back(c);
  }
  return out;
}

int main(int argc, char** argv) {
  try {
    const std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "make" && argc == 3) {
      const fs::path dir = argv[2];
      std::string tsv = "filepath\ttitle\n";
      for (int i = 0; i < 40; ++i) {
        const std::string name = "img" + std::to_string(i) + ".png";
        if (i % 9 == 4) coca::testing::write_text(dir / "imgs" / name, "broken");
        else if (i % 13 != 7) coca::testing::write_file(dir / "imgs" / name, coca::testing::png_solid(12, 9, i, 2 * i, 3 * i));
        tsv += name + "\tpicture number " + std::to_string(i) + "\n";
      }
      coca::testing::write_text(dir / "list.tsv", tsv);
      return 0;
    }
    if (mode == "compare" && argc == 4) {
      const auto a = captions_of(argv[2]), b = captions_of(argv[3]);
      COCA_CHECK(a == b, "the multi-rank output holds different samples (", a.size(), " vs ", b.size(), ")");
      const auto ra = ShardIndex::load(argv[2]).extra.at("skipped_by_reason");
      const auto rb = ShardIndex::load(argv[3]).extra.at("skipped_by_reason");
      COCA_CHECK(ra == rb, "skip counts differ: ", ra.dump(), " vs ", rb.dump());
      COCA_CHECK(ra.value("not_an_image", 0) == 4 && ra.value("missing_file", 0) == 3, "unexpected skips ", ra.dump());
      COCA_CHECK(ShardIndex::load(argv[3]).extra.at("ranks") == 3, "expected a 3-rank run");
      for (const auto& e : fs::directory_iterator(argv[3]))
        COCA_CHECK(e.path().filename().string().find("tmp") == std::string::npos, "left over: ", e.path().string());
      std::printf("mpi shard compare: %zu samples identical, skips %s\n", a.size(), ra.dump().c_str());
      return 0;
    }
    std::fprintf(stderr, "usage: mpi_shard_tool make DIR | compare ONE MANY\n");
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mpi_shard_tool: error: %s\n", e.what());
    return 1;
  }
}
