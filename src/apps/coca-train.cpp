// coca-train: CoCa pretraining under mpirun (see --help).
#include <boost/program_options/errors.hpp>
#include <cstdio>

#include "coca/dist/mpi.h"
#include "coca/train/trainer.h"
#include "coca/kernels/cpu/blas_select.h"

int main(int argc, char** argv) {
  coca::cpu::select_blas_kernels(argv);  // before any thread: may re-execute this program
  coca::train::TrainOptions opts;
  try {
    if (!coca::train::parse_train_options(argc, argv, opts)) return 0;
  } catch (const boost::program_options::error& e) {
    std::fprintf(stderr, "coca-train: %s (see --help)\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "coca-train: %s\n", e.what());
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
