#pragma once
// The NCCL backend: CUDA tensors, one GPU per local rank. Rank 0 creates the NCCL unique id and
// broadcasts it over MPI; each rank calls cudaSetDevice(local rank) before ncclCommInitRank.
// The communicator is non-blocking (ncclConfig_t::blocking = 0): every wait polls the
// collective's completion event and ncclCommGetAsyncError, and after CommOptions::timeout it
// aborts the communicator and throws an error naming the collective and the rank.
#include <memory>

#include "coca/dist/mpi.h"

namespace coca::dist {

struct NcclOptions {
  CommOptions comm = CommOptions::from_env();
  // The stream the rest of the step runs on (a cudaStream_t; null = the CUDA backend's stream,
  // on which every kernel and cuBLAS call of the library runs).
  // Collectives run on the communicator's own stream, ordered after this one with an event;
  // wait() makes this stream wait for the collective's completion event.
  void* compute_stream = nullptr;
};

// Throws in a build without the CUDA backend, or when this host has fewer GPUs than ranks.
std::shared_ptr<Communicator> make_nccl_communicator(MpiCommunicator& mpi, NcclOptions opts = {});

}  // namespace coca::dist
