// coca-train: CoCa pretraining under mpirun (see --help).
#include <boost/program_options/errors.hpp>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "coca/dist/mpi.h"
#include "coca/train/trainer.h"
#include "coca/kernels/cpu/blas_select.h"

namespace {

// "coca-train" alone, or "coca-train: rank R of N on HOST" inside a job of several ranks (the
// launcher's environment tells, before MPI is up): a command-line or file error seen on one
// host only (a path it cannot see) names that host.
std::string who() {
  const char* size = std::getenv("OMPI_COMM_WORLD_SIZE");
  const char* rank = std::getenv("OMPI_COMM_WORLD_RANK");
  if (!size || !rank || std::atoi(size) <= 1) return "coca-train";
  char host[256] = "?";
  ::gethostname(host, sizeof host - 1);
  return std::string("coca-train: rank ") + rank + " of " + size + " on " + host;
}

}  // namespace

int main(int argc, char** argv) {
  coca::cpu::select_blas_kernels(argv);  // before any thread: may re-execute this program
  coca::train::TrainOptions opts;
  try {
    if (!coca::train::parse_train_options(argc, argv, opts)) return 0;
  } catch (const boost::program_options::error& e) {
    std::fprintf(stderr, "%s: %s (see --help)\n", who().c_str(), e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", who().c_str(), e.what());
    return 2;
  }
  try {
    const int rc = coca::train::run_training(opts);
    coca::dist::finalize();
    return rc;
  } catch (const std::exception& e) {
    coca::dist::fatal(e.what());  // names the rank, aborts every rank of the job
  }
}
