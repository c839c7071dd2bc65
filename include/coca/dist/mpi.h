#pragma once
// The MPI backend and the process group. MPI always manages the processes, whatever backend
// moves the tensors: rank and size from MPI_COMM_WORLD, the local rank (one GPU each) from
// MPI_Comm_split_type(MPI_COMM_TYPE_SHARED). Works under mpirun (one or many hosts), Slurm's
// `srun --mpi=pmix`, and as a plain process without a launcher (world size 1).
#include <mpi.h>

#include <memory>
#include <string>
#include <vector>

#include "coca/dist/communicator.h"

namespace coca::dist {

// Host-side collectives (sum, all_gather_value, broadcast_bytes, all_gather_strings, barrier)
// made by this process so far: each waits for every rank. The trainer reports them per step
// (metrics.jsonl host_collectives_per_step).
int64_t host_collectives();

class MpiCommunicator : public Communicator {
 public:
  // Duplicates `base`, so that our collectives never match a user's on the same communicator.
  MpiCommunicator(MPI_Comm base, CommOptions opts);
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  const char* backend() const override { return "mpi"; }
  Device device() const override { return Device::CPU; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const CommOptions& options() const override { return opts_; }
  int local_rank() const { return local_rank_; }   // rank among the processes of this host
  int local_size() const { return local_size_; }
  const std::string& host() const { return host_; }
  MPI_Comm comm() const { return comm_; }

  std::unique_ptr<Work> all_reduce_async(const Tensor& t, ReduceOp op) override;
  std::unique_ptr<Work> reduce_scatter_async(const Tensor& in, const Tensor& out, ReduceOp op) override;
  std::unique_ptr<Work> all_gather_async(const Tensor& in, const Tensor& out) override;
  std::unique_ptr<Work> broadcast_async(const Tensor& t, int root) override;
  void barrier() override;

  // Host scalars, for counts and norms.
  double sum(double value);
  std::vector<int64_t> all_gather_value(int64_t value);
  void broadcast_bytes(void* data, size_t nbytes, int root);
  // Every rank's string on every rank, in rank order (under the collective timeout).
  std::vector<std::string> all_gather_strings(const std::string& mine);

  // Liveness, for a collective that timed out: every rank answers probes while it waits in (or
  // tests) a collective, on a communicator of their own. silent_ranks() asks every other rank
  // and returns those that gave no answer within `seconds` ("rank 2 (node2)" each).
  void serve_probes() const;
  std::vector<std::string> silent_ranks(double seconds) const;
  const std::string& host_of(int rank) const { return hosts_.at(rank); }
  void cancel_probes() noexcept;  // before MPI_Finalize (finalize() calls it)
  // Seconds this rank has spent blocked in wait() on a collective, in all (straggler detection).
  double wait_seconds() const { return wait_seconds_; }
  void add_wait_seconds(double s) const { wait_seconds_ += s; }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL, probe_comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  std::string host_;
  std::vector<std::string> hosts_;  // every rank's host, in rank order
  CommOptions opts_;
  mutable MPI_Request probe_req_ = MPI_REQUEST_NULL;
  mutable int probe_buf_ = 0;
  mutable double wait_seconds_ = 0;
};

// Initialises MPI (once; MPI_THREAD_FUNNELED: only the main thread calls MPI), installs a
// terminate handler that reports an uncaught exception with this rank and aborts the whole
// job, and returns the world communicator. MPI is finalised at normal exit.
std::shared_ptr<MpiCommunicator> init(int* argc, char*** argv, CommOptions opts = CommOptions::from_env());

// Prints "coca: rank R of W on HOST failed: CAUSE" to stderr and aborts every rank of the job
// (MPI_Abort), so that no peer is left waiting in a collective. Safe before init (plain exit).
[[noreturn]] void fatal(const std::string& cause, int exit_code = 1);

// Finalises MPI now (idempotent); for programs that want to do it before exit.
void finalize();

}  // namespace coca::dist
