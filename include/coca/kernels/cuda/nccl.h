#pragma once
// NCCL collectives on CUDA tensors, for data-parallel training on GPUs. Every call is checked
// (COCA_NCCL_CHECK) and runs on the library's stream. A CPU-only build throws on construction.
#include <string>

#include "coca/tensor/tensor.h"

namespace coca::cuda {

class NcclComm {
 public:
  // Rank 0 makes the id and ships it to the other ranks (over MPI, say).
  static std::string unique_id();
  NcclComm(int rank, int world, const std::string& id);
  ~NcclComm();
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  // In place: t = sum over ranks of t (contiguous f32/f64/bf16 CUDA tensor).
  void all_reduce_sum(Tensor& t);
  // out [world * n, ...] = the ranks' `in` [n, ...] in rank order (both contiguous, CUDA).
  void all_gather(const Tensor& in, Tensor& out);
  int rank() const { return rank_; }
  int world() const { return world_; }

 private:
  void* comm_ = nullptr;  // ncclComm_t
  int rank_ = 0, world_ = 1;
};

}  // namespace coca::cuda
