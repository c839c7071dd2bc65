#pragma once
// One collective interface, two backends: MpiCommunicator (CPU tensors, coca/dist/mpi.h) and
// NcclCommunicator (CUDA tensors, coca/dist/nccl.h). Every tensor argument must be contiguous,
// on the backend's device, and one of f32, f64, bf16, i32. Every rank must issue the same
// collectives in the same order (the usual MPI/NCCL contract).
#include <chrono>
#include <memory>
#include <string>

#include "coca/tensor/tensor.h"

namespace coca::dist {

enum class ReduceOp { Sum, Average };  // Average on i32 truncates toward zero (as NCCL does)
const char* reduce_op_name(ReduceOp op);

struct CommOptions {
  // A collective that has not completed after this long throws a coca::Error naming the
  // collective and the rank (a peer that died or skipped a step), which aborts the job.
  std::chrono::milliseconds timeout = std::chrono::minutes(10);
  // The defaults, with COCA_COLLECTIVE_TIMEOUT_S (seconds, > 0) from the environment if set.
  static CommOptions from_env();
};

// A collective in flight. test() progresses it without blocking and says whether it is done;
// wait() blocks until done and throws on failure or timeout. Results are defined only after
// test() returned true or wait() returned.
class Work {
 public:
  virtual ~Work() = default;
  virtual bool test() = 0;
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual const char* backend() const = 0;  // "mpi" or "nccl"
  virtual Device device() const = 0;        // where its tensors must live
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const CommOptions& options() const = 0;

  // In place: t <- op over ranks of t.
  virtual std::unique_ptr<Work> all_reduce_async(const Tensor& t, ReduceOp op) = 0;
  // in: [W * k] elements (any shape), out: [k] elements; out <- slice `rank` of op over ranks.
  virtual std::unique_ptr<Work> reduce_scatter_async(const Tensor& in, const Tensor& out, ReduceOp op) = 0;
  // in: k elements, out: W * k elements, rank order (dim 0 for [n, ...] -> [W n, ...]).
  virtual std::unique_ptr<Work> all_gather_async(const Tensor& in, const Tensor& out) = 0;
  // t <- t of `root`.
  virtual std::unique_ptr<Work> broadcast_async(const Tensor& t, int root) = 0;
  virtual void barrier() = 0;

  void all_reduce(const Tensor& t, ReduceOp op) { all_reduce_async(t, op)->wait(); }
  void reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op) { reduce_scatter_async(in, out, op)->wait(); }
  void all_gather(const Tensor& in, const Tensor& out) { all_gather_async(in, out)->wait(); }
  void broadcast(const Tensor& t, int root) { broadcast_async(t, root)->wait(); }
};

// Argument checks shared by the backends; `what` names the collective in the message.
void check_tensor_arg(const Communicator& c, const char* what, const Tensor& t);
void check_sizes(const Communicator& c, const char* what, const Tensor& small, const Tensor& big);

}  // namespace coca::dist
