// Run under mpirun: every rank streams its own shards of a set that rank 0 writes; checks
// lockstep (same batch count on every rank), no sample on two ranks or twice, and that each
// rank's resume from a mid-epoch state gives the same batches.
#include <mpi.h>

#include <cstdio>
#include <set>

#include "coca/data/loader.h"
#include "data/fixtures.h"

using namespace coca;

#define MPI_OK(call)                                                        \
  do {                                                                      \
    if ((call) != MPI_SUCCESS) {                                            \
      std::fprintf(stderr, "MPI call failed: %s (%s:%d)\n", #call, __FILE__, __LINE__); \
      MPI_Abort(MPI_COMM_WORLD, 2);                                         \
    }                                                                       \
  } while (0)

static int failures = 0;
#define EXPECT(cond, ...)                                                  \
  do {                                                                     \
    if (!(cond)) {                                                         \
      ++failures;                                                          \
      std::fprintf(stderr, "rank check failed: %s: %s\n", #cond, coca::str_cat(__VA_ARGS__).c_str()); \
    }                                                                      \
  } while (0)

int main(int argc, char** argv) {
  MPI_OK(MPI_Init(&argc, &argv));
  int rank = 0, world = 1;
  MPI_OK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  MPI_OK(MPI_Comm_size(MPI_COMM_WORLD, &world));
  try {
    // Rank 0 makes the shard set; the directory name travels by broadcast.
    std::unique_ptr<coca::testing::TempDir> dir;
    char path[512] = {0};
    if (rank == 0) {
      dir = std::make_unique<coca::testing::TempDir>("mpi-loader");
      coca::testing::make_indexed_shards(dir->str(), {11, 9, 14, 6, 10, 13, 8, 12});
      std::snprintf(path, sizeof(path), "%s", dir->str().c_str());
    }
    MPI_OK(MPI_Bcast(path, sizeof(path), MPI_CHAR, 0, MPI_COMM_WORLD));
    for (int64_t epoch = 0; epoch < 2; ++epoch) {
      LoaderOptions o;
      o.dir = path;
      o.rank = rank;
      o.world = world;
      o.batch_size = 3;
      o.seed = 77;
      o.shuffle_buffer = 5;
      o.augment = true;
      o.image_size = 6;
      ShardLoader loader(o);
      loader.start_epoch(epoch);
      std::vector<int64_t> mine;
      std::vector<std::vector<float>> images;
      Batch b;
      while (loader.next(b)) {
        mine.insert(mine.end(), b.indices.begin(), b.indices.end());
        images.push_back(b.images.to_vector<float>());
      }
      const int nb = static_cast<int>(images.size());
      std::vector<int> counts(static_cast<size_t>(world));
      MPI_OK(MPI_Allgather(&nb, 1, MPI_INT, counts.data(), 1, MPI_INT, MPI_COMM_WORLD));
      for (int c : counts) EXPECT(c == nb, "epoch ", epoch, ": rank ", rank, " has ", nb, " batches, another has ", c);
      EXPECT(nb > 0, "no batches");
      std::vector<int64_t> all(static_cast<size_t>(nb) * 3 * world);
      MPI_OK(MPI_Allgather(mine.data(), nb * 3, MPI_INT64_T, all.data(), nb * 3, MPI_INT64_T, MPI_COMM_WORLD));
      std::set<int64_t> distinct(all.begin(), all.end());
      EXPECT(distinct.size() == all.size(), "epoch ", epoch, ": ", all.size() - distinct.size(), " duplicate samples");
      // Resume from the middle on every rank.
      ShardLoader first(o);
      first.start_epoch(epoch);
      for (int i = 0; i < nb / 2; ++i) first.next(b);
      ShardLoader resumed(o);
      resumed.restore(first.state());
      int i = nb / 2;
      while (resumed.next(b)) {
        EXPECT(i < nb && b.images.to_vector<float>() == images[static_cast<size_t>(i)], "resume differs at batch ", i);
        ++i;
      }
      EXPECT(i == nb, "resumed run yielded ", i - nb / 2, " batches, wanted ", nb - nb / 2);
    }
    MPI_OK(MPI_Barrier(MPI_COMM_WORLD));  // rank 0 removes the directory only after everyone is done
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rank %d: %s\n", rank, e.what());
    ++failures;
  }
  int total = 0;
  MPI_OK(MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD));
  if (rank == 0) std::printf("mpi loader check, %d ranks: %s\n", world, total == 0 ? "passed" : "FAILED");
  MPI_Finalize();
  return total == 0 ? 0 : 1;
}
