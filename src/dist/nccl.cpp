// NCCL backend on raw device pointers (Tensor::raw_data() of CUDA tensors). Non-blocking
// communicator: calls may return ncclInProgress, after which we poll ncclCommGetAsyncError;
// every wait polls the completion event and the asynchronous error, with a timeout.
#include "coca/dist/nccl.h"

#ifdef COCA_WITH_CUDA
#include <nccl.h>

#include <thread>

#include "coca/kernels/cuda/check.h"
#include "coca/kernels/cuda/context.h"
#endif

namespace coca::dist {

#ifndef COCA_WITH_CUDA

std::shared_ptr<Communicator> make_nccl_communicator(MpiCommunicator& mpi, NcclOptions) {
  throw Error(str_cat("make_nccl_communicator on rank ", mpi.rank(),
                      ": this build has no CUDA backend (configure with -DCOCA_CUDA=ON)"));
}

#else

namespace {

ncclDataType_t nccl_type(DType d) {
  switch (d) {
    case DType::f32: return ncclFloat32;
    case DType::f64: return ncclFloat64;
    case DType::bf16: return ncclBfloat16;
    case DType::i32: return ncclInt32;
    default: throw Error(str_cat("NCCL: dtype ", dtype_name(d), " is not supported"));
  }
}

ncclRedOp_t nccl_op(ReduceOp op) { return op == ReduceOp::Sum ? ncclSum : ncclAvg; }

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

class NcclCommunicator;

class NcclWork : public Work {
 public:
  NcclWork(NcclCommunicator& c, std::string what, std::vector<Tensor> keep);
  ~NcclWork() override;
  bool test() override;
  void wait() override;
  cudaEvent_t done_event() const { return done_; }

 private:
  NcclCommunicator& comm_;
  std::string what_;
  std::vector<Tensor> keep_;
  cudaEvent_t done_ = nullptr;
  bool finished_ = false;
};

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(MpiCommunicator& mpi, NcclOptions opts)
      : rank_(mpi.rank()), size_(mpi.size()), opts_(opts.comm), compute_(static_cast<cudaStream_t>(opts.compute_stream)) {
    int gpus = 0;
    COCA_CUDA_CHECK(cudaGetDeviceCount(&gpus));
    COCA_CHECK(mpi.local_rank() < gpus, "NCCL: rank ", rank_, " is local rank ", mpi.local_rank(), " on host ",
               mpi.host(), " which has ", gpus, " GPU(s); launch at most one rank per GPU");
    device_ = mpi.local_rank();
    cuda::set_device(device_);  // the backend's stream and handles live on this GPU
    // By default collectives order against the stream every kernel of the backend runs on.
    if (!compute_) compute_ = cuda::stream();
    ncclUniqueId id{};
    if (rank_ == 0) COCA_NCCL_CHECK(ncclGetUniqueId(&id));
    mpi.broadcast_bytes(&id, sizeof(id), 0);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    enqueue_checked(ncclCommInitRankConfig(&comm_, size_, id, rank_, &config), "ncclCommInitRankConfig", __LINE__);
    COCA_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  }

  ~NcclCommunicator() override {
    if (comm_ && !aborted_) {
      // Destructor: never throws; a communicator that does not finalise in time is aborted.
      const auto start = std::chrono::steady_clock::now();
      ncclResult_t st = ncclCommFinalize(comm_);
      while (st == ncclInProgress && seconds_since(start) < 10.0) {
        std::this_thread::yield();
        ncclCommGetAsyncError(comm_, &st);
      }
      if (st == ncclSuccess) ncclCommDestroy(comm_);
      else ncclCommAbort(comm_);
    }
    if (stream_) cudaStreamDestroy(stream_);
  }

  const char* backend() const override { return "nccl"; }
  Device device() const override { return Device::CUDA; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const CommOptions& options() const override { return opts_; }
  cudaStream_t compute_stream() const { return compute_; }

  std::unique_ptr<Work> all_reduce_async(const Tensor& t, ReduceOp op) override {
    check_tensor_arg(*this, "all_reduce", t);
    return enqueue(str_cat("all_reduce(", reduce_op_name(op), ") of ", t.describe()), {t}, [&] {
      return ncclAllReduce(t.raw_data(), t.raw_data(), t.numel(), nccl_type(t.dtype()), nccl_op(op), comm_, stream_);
    });
  }
  std::unique_ptr<Work> reduce_scatter_async(const Tensor& in, const Tensor& out, ReduceOp op) override {
    check_sizes(*this, "reduce_scatter", out, in);
    return enqueue(str_cat("reduce_scatter(", reduce_op_name(op), ") of ", in.describe()), {in, out}, [&] {
      return ncclReduceScatter(in.raw_data(), out.raw_data(), out.numel(), nccl_type(in.dtype()), nccl_op(op), comm_,
                               stream_);
    });
  }
  std::unique_ptr<Work> all_gather_async(const Tensor& in, const Tensor& out) override {
    check_sizes(*this, "all_gather", in, out);
    return enqueue(str_cat("all_gather of ", in.describe()), {in, out}, [&] {
      return ncclAllGather(in.raw_data(), out.raw_data(), in.numel(), nccl_type(in.dtype()), comm_, stream_);
    });
  }
  std::unique_ptr<Work> broadcast_async(const Tensor& t, int root) override {
    check_tensor_arg(*this, "broadcast", t);
    COCA_CHECK(root >= 0 && root < size_, "nccl broadcast: root ", root, " is not a rank of ", size_);
    return enqueue(str_cat("broadcast from rank ", root, " of ", t.describe()), {t}, [&] {
      return ncclBroadcast(t.raw_data(), t.raw_data(), t.numel(), nccl_type(t.dtype()), root, comm_, stream_);
    });
  }
  void barrier() override {
    Tensor one = Tensor::empty({1}, DType::i32, Device::CUDA);
    COCA_CUDA_CHECK(cudaMemset(one.raw_data(), 0, sizeof(int32_t)));
    all_reduce(one, ReduceOp::Sum);
    COCA_CUDA_CHECK(cudaStreamSynchronize(compute_));
  }

  // Throws if the communicator reported an asynchronous error (a peer failed, a network error).
  void check_async(const std::string& what) {
    if (aborted_) throw Error(str_cat("NCCL ", what, " on rank ", rank_, ": the communicator was aborted earlier"));
    ncclResult_t st = ncclSuccess;
    COCA_NCCL_CHECK(ncclCommGetAsyncError(comm_, &st));
    if (st != ncclSuccess && st != ncclInProgress)
      throw Error(str_cat("NCCL asynchronous error ", ncclGetErrorString(st), " during ", what, " on rank ", rank_,
                          " of ", size_));
  }

  // After a timeout: frees the GPU from the stuck kernel so that the error can propagate.
  void abort() {
    if (!aborted_ && comm_) ncclCommAbort(comm_);
    aborted_ = true;
  }

 private:
  template <typename Launch>
  std::unique_ptr<Work> enqueue(std::string what, std::vector<Tensor> keep, Launch launch) {
    check_async(what);
    auto work = std::make_unique<NcclWork>(*this, std::move(what), std::move(keep));
    // The collective reads what the compute stream wrote: order it after that work.
    cudaEvent_t ready = nullptr;
    COCA_CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
    COCA_CUDA_CHECK(cudaEventRecord(ready, compute_));
    COCA_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready, 0));
    COCA_CUDA_CHECK(cudaEventDestroy(ready));
    enqueue_checked(launch(), "NCCL collective", __LINE__);
    COCA_CUDA_CHECK(cudaEventRecord(work->done_event(), stream_));
    return work;
  }

  // Non-blocking communicators answer ncclInProgress while the call completes in the background.
  void enqueue_checked(ncclResult_t r, const char* call, int line) {
    const auto start = std::chrono::steady_clock::now();
    while (r == ncclInProgress) {
      if (seconds_since(start) * 1000 > static_cast<double>(opts_.timeout.count())) {
        abort();
        throw Error(str_cat("NCCL ", call, " on rank ", rank_, " did not complete within ", opts_.timeout.count() / 1000,
                            " s (", __FILE__, ":", line, ")"));
      }
      std::this_thread::yield();
      COCA_NCCL_CHECK(ncclCommGetAsyncError(comm_, &r));
    }
    if (r != ncclSuccess)
      throw Error(str_cat("NCCL error ", ncclGetErrorString(r), " in ", call, " on rank ", rank_, " at ", __FILE__, ":",
                          line));
  }

  int rank_, size_, device_ = 0;
  CommOptions opts_;
  cudaStream_t compute_ = nullptr;
  cudaStream_t stream_ = nullptr;
  ncclComm_t comm_ = nullptr;
  bool aborted_ = false;
};

NcclWork::NcclWork(NcclCommunicator& c, std::string what, std::vector<Tensor> keep)
    : comm_(c), what_(std::move(what)), keep_(std::move(keep)) {
  COCA_CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
}

NcclWork::~NcclWork() {
  if (!finished_) {  // the kernel may still use the buffers (only while an error unwinds)
    static std::vector<std::vector<Tensor>> leaked;
    leaked.push_back(std::move(keep_));
  }
  if (done_) cudaEventDestroy(done_);
}

bool NcclWork::test() {
  if (finished_) return true;
  comm_.check_async(what_);
  const cudaError_t e = cudaEventQuery(done_);
  if (e == cudaErrorNotReady) return false;
  COCA_CUDA_CHECK(e);
  // Later work on the compute stream sees the result.
  COCA_CUDA_CHECK(cudaStreamWaitEvent(comm_.compute_stream(), done_, 0));
  finished_ = true;
  return true;
}

void NcclWork::wait() {
  const auto start = std::chrono::steady_clock::now();
  while (!test()) {
    const double waited = seconds_since(start);
    if (waited * 1000 > static_cast<double>(comm_.options().timeout.count())) {
      comm_.abort();
      throw Error(str_cat("NCCL ", what_, " timed out after ", static_cast<int64_t>(waited), " s on rank ", comm_.rank(),
                          " of ", comm_.size(), ": a peer never joined it (did a rank die, hang, or skip a step?)"));
    }
    std::this_thread::yield();
  }
}

}  // namespace

std::shared_ptr<Communicator> make_nccl_communicator(MpiCommunicator& mpi, NcclOptions opts) {
  return std::make_shared<NcclCommunicator>(mpi, opts);
}

#endif

}  // namespace coca::dist
