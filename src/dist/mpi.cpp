// MPI backend: every collective is the non-blocking MPI-3 variant, so that the same Work handle
// serves the overlapped gradient buckets (progressed by test() while backward runs) and the
// blocking calls (wait(), which polls with the communicator's timeout instead of hanging).
#include "coca/dist/mpi.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <set>
#include <thread>

#include "coca/dist/check.h"

namespace coca::dist {
namespace {

MPI_Op g_bf16_sum = MPI_OP_NULL;
bool g_we_initialised = false;
constexpr int kPingTag = 1, kPongTag = 2;
constexpr double kProbeSeconds = 3.0;
std::set<MpiCommunicator*> g_live;  // whose probe receive finalize() cancels

// bf16 has no MPI type: it travels as uint16 and sums through float32 (round to nearest even).
void bf16_sum(void* in, void* inout, int* len, MPI_Datatype*) {
  const uint16_t* a = static_cast<const uint16_t*>(in);
  uint16_t* b = static_cast<uint16_t*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = bf16::from_float(bf16::to_float(a[i]) + bf16::to_float(b[i]));
}

MPI_Datatype mpi_type(DType d) {
  switch (d) {
    case DType::f32: return MPI_FLOAT;
    case DType::f64: return MPI_DOUBLE;
    case DType::bf16: return MPI_UINT16_T;
    case DType::i32: return MPI_INT32_T;
    default: throw Error(str_cat("MPI: dtype ", dtype_name(d), " is not supported"));
  }
}

MPI_Op mpi_sum(DType d) { return d == DType::bf16 ? g_bf16_sum : MPI_SUM; }

// Divides by the world size after a sum (MPI has no average).
void divide(const Tensor& t, int world) {
  const int64_t n = t.numel();
  switch (t.dtype()) {
    case DType::f32: {
      float* p = t.data<float>();
      for (int64_t i = 0; i < n; ++i) p[i] /= static_cast<float>(world);
      break;
    }
    case DType::f64: {
      double* p = t.data<double>();
      for (int64_t i = 0; i < n; ++i) p[i] /= world;
      break;
    }
    case DType::bf16: {
      bf16* p = t.data<bf16>();
      for (int64_t i = 0; i < n; ++i) p[i] = bf16(static_cast<float>(p[i]) / static_cast<float>(world));
      break;
    }
    case DType::i32: {
      int32_t* p = t.data<int32_t>();
      for (int64_t i = 0; i < n; ++i) p[i] /= world;
      break;
    }
    default: break;
  }
}

class MpiWork : public Work {
 public:
  MpiWork(const MpiCommunicator& c, std::string what, std::vector<Tensor> keep, Tensor average_out)
      : comm_(c), what_(std::move(what)), keep_(std::move(keep)), average_out_(std::move(average_out)) {}
  ~MpiWork() override {
    // An unfinished collective still owns its buffers: keep them alive rather than let MPI
    // write into freed memory (only reachable while an error is already unwinding).
    if (!done_) {
      static std::vector<std::vector<Tensor>> leaked;
      leaked.push_back(std::move(keep_));
    }
  }
  MPI_Request* request() { return &req_; }

  bool test() override {
    if (done_) return true;
    comm_.serve_probes();
    int flag = 0;
    COCA_MPI_CHECK(MPI_Test(&req_, &flag, MPI_STATUS_IGNORE));
    if (flag) {
      done_ = true;
      if (average_out_.defined()) divide(average_out_, comm_.size());
    }
    return done_;
  }

  void wait() override {
    const auto start = std::chrono::steady_clock::now();
    struct Count {  // the time blocked here, however the wait ends
      const MpiCommunicator& comm;
      std::chrono::steady_clock::time_point start;
      ~Count() { comm.add_wait_seconds(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()); }
    } count{comm_, start};
    for (int spin = 0; !test(); ++spin) {
      const auto waited = std::chrono::steady_clock::now() - start;
      if (waited > comm_.options().timeout) {
        const std::vector<std::string> silent = comm_.silent_ranks(kProbeSeconds);
        std::string who;
        for (const std::string& r : silent) who += (who.empty() ? "" : ", ") + r;
        throw Error(str_cat("MPI ", what_, " timed out after ",
                            std::chrono::duration_cast<std::chrono::seconds>(waited).count(), " s on rank ",
                            comm_.rank(), " of ", comm_.size(), " (", comm_.host(), "): ",
                            silent.empty() ? std::string("every rank still answers, so one of them never joined it "
                                                         "(did a rank hang or skip a step?)")
                                           : str_cat("no answer within ", kProbeSeconds, " s from ", who,
                                                     " (the host, its link or the process is gone)")));
      }
      if (spin > 1000) std::this_thread::yield();  // oversubscribed ranks: let the peer run
    }
  }

 private:
  const MpiCommunicator& comm_;
  std::string what_;
  std::vector<Tensor> keep_;
  Tensor average_out_;
  MPI_Request req_ = MPI_REQUEST_NULL;
  bool done_ = false;
};

void terminate_handler() {
  std::string cause = "std::terminate called without an active exception";
  if (auto e = std::current_exception()) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      cause = str_cat("uncaught exception: ", ex.what());
    } catch (...) {
      cause = "uncaught exception of unknown type";
    }
  }
  fatal(cause);
}

void finalize_at_exit() { finalize(); }

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm base, CommOptions opts) : opts_(opts) {
  COCA_MPI_CHECK(MPI_Comm_dup(base, &comm_));
  // Errors come back as codes (and become coca::Error) instead of killing the process silently.
  COCA_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
  COCA_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
  COCA_MPI_CHECK(MPI_Comm_size(comm_, &size_));
  MPI_Comm node = MPI_COMM_NULL;
  COCA_MPI_CHECK(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node));
  COCA_MPI_CHECK(MPI_Comm_rank(node, &local_rank_));
  COCA_MPI_CHECK(MPI_Comm_size(node, &local_size_));
  COCA_MPI_CHECK(MPI_Comm_free(&node));
  char name[MPI_MAX_PROCESSOR_NAME];
  int len = 0;
  COCA_MPI_CHECK(MPI_Get_processor_name(name, &len));
  host_.assign(name, len);
  std::vector<char> names(static_cast<size_t>(size_) * MPI_MAX_PROCESSOR_NAME);
  std::vector<char> mine(MPI_MAX_PROCESSOR_NAME, '\0');
  std::copy(host_.begin(), host_.end(), mine.begin());
  COCA_MPI_CHECK(MPI_Allgather(mine.data(), MPI_MAX_PROCESSOR_NAME, MPI_CHAR, names.data(), MPI_MAX_PROCESSOR_NAME,
                               MPI_CHAR, comm_));
  for (int r = 0; r < size_; ++r) hosts_.emplace_back(names.data() + static_cast<size_t>(r) * MPI_MAX_PROCESSOR_NAME);
  COCA_MPI_CHECK(MPI_Comm_dup(comm_, &probe_comm_));
  COCA_MPI_CHECK(MPI_Irecv(&probe_buf_, 1, MPI_INT, MPI_ANY_SOURCE, kPingTag, probe_comm_, &probe_req_));
  g_live.insert(this);
}

MpiCommunicator::~MpiCommunicator() {
  g_live.erase(this);
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  cancel_probes();
  if (probe_comm_ != MPI_COMM_NULL) MPI_Comm_free(&probe_comm_);
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);  // destructor: never throws
}

void MpiCommunicator::cancel_probes() noexcept {
  if (probe_req_ == MPI_REQUEST_NULL) return;
  MPI_Cancel(&probe_req_);
  MPI_Wait(&probe_req_, MPI_STATUS_IGNORE);
  probe_req_ = MPI_REQUEST_NULL;
}

void MpiCommunicator::serve_probes() const {
  for (int guard = 0; probe_req_ != MPI_REQUEST_NULL && guard < 64; ++guard) {
    int flag = 0;
    MPI_Status st;
    if (MPI_Test(&probe_req_, &flag, &st) != MPI_SUCCESS || !flag) return;
    // Answer without waiting: the send completes in the background (an int goes eagerly).
    MPI_Request answer;
    if (MPI_Isend(&rank_, 1, MPI_INT, st.MPI_SOURCE, kPongTag, probe_comm_, &answer) == MPI_SUCCESS)
      MPI_Request_free(&answer);
    COCA_MPI_CHECK(MPI_Irecv(&probe_buf_, 1, MPI_INT, MPI_ANY_SOURCE, kPingTag, probe_comm_, &probe_req_));
  }
}

std::vector<std::string> MpiCommunicator::silent_ranks(double seconds) const {
  std::vector<MPI_Request> answers;
  std::vector<int> from, got(size_, -1);
  for (int r = 0; r < size_; ++r) {
    if (r == rank_) continue;
    MPI_Request ask, answer;
    if (MPI_Isend(&rank_, 1, MPI_INT, r, kPingTag, probe_comm_, &ask) == MPI_SUCCESS) MPI_Request_free(&ask);
    if (MPI_Irecv(&got[r], 1, MPI_INT, r, kPongTag, probe_comm_, &answer) != MPI_SUCCESS) continue;
    answers.push_back(answer);
    from.push_back(r);
  }
  std::vector<bool> answered(answers.size(), false);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  size_t left = answers.size();
  while (left > 0 && std::chrono::steady_clock::now() < deadline) {
    serve_probes();  // peers probing at the same time are answered too
    for (size_t i = 0; i < answers.size(); ++i) {
      if (answered[i]) continue;
      int flag = 0;
      if (MPI_Test(&answers[i], &flag, MPI_STATUS_IGNORE) == MPI_SUCCESS && flag) {
        answered[i] = true;
        --left;
      }
    }
    std::this_thread::yield();
  }
  std::vector<std::string> silent;
  for (size_t i = 0; i < answers.size(); ++i) {
    if (answered[i]) continue;
    MPI_Cancel(&answers[i]);
    MPI_Request_free(&answers[i]);
    silent.push_back(str_cat("rank ", from[i], " (", hosts_[from[i]], ")"));
  }
  return silent;
}

std::unique_ptr<Work> MpiCommunicator::all_reduce_async(const Tensor& t, ReduceOp op) {
  check_tensor_arg(*this, "all_reduce", t);
  auto w = std::make_unique<MpiWork>(*this, str_cat("all_reduce(", reduce_op_name(op), ") of ", t.describe()),
                                     std::vector<Tensor>{t}, op == ReduceOp::Average ? t : Tensor());
  COCA_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, t.raw_data(), static_cast<int>(t.numel()), mpi_type(t.dtype()),
                                mpi_sum(t.dtype()), comm_, w->request()));
  return w;
}

std::unique_ptr<Work> MpiCommunicator::reduce_scatter_async(const Tensor& in, const Tensor& out, ReduceOp op) {
  check_sizes(*this, "reduce_scatter", out, in);
  auto w = std::make_unique<MpiWork>(*this, str_cat("reduce_scatter(", reduce_op_name(op), ") of ", in.describe()),
                                     std::vector<Tensor>{in, out}, op == ReduceOp::Average ? out : Tensor());
  COCA_MPI_CHECK(MPI_Ireduce_scatter_block(in.raw_data(), out.raw_data(), static_cast<int>(out.numel()),
                                           mpi_type(in.dtype()), mpi_sum(in.dtype()), comm_, w->request()));
  return w;
}

std::unique_ptr<Work> MpiCommunicator::all_gather_async(const Tensor& in, const Tensor& out) {
  check_sizes(*this, "all_gather", in, out);
  auto w = std::make_unique<MpiWork>(*this, str_cat("all_gather of ", in.describe()), std::vector<Tensor>{in, out},
                                     Tensor());
  const MPI_Datatype type = mpi_type(in.dtype());
  const int n = static_cast<int>(in.numel());
  COCA_MPI_CHECK(MPI_Iallgather(in.raw_data(), n, type, out.raw_data(), n, type, comm_, w->request()));
  return w;
}

std::unique_ptr<Work> MpiCommunicator::broadcast_async(const Tensor& t, int root) {
  check_tensor_arg(*this, "broadcast", t);
  COCA_CHECK(root >= 0 && root < size_, "mpi broadcast: root ", root, " is not a rank of ", size_);
  auto w = std::make_unique<MpiWork>(*this, str_cat("broadcast from rank ", root, " of ", t.describe()),
                                     std::vector<Tensor>{t}, Tensor());
  COCA_MPI_CHECK(MPI_Ibcast(t.raw_data(), static_cast<int>(t.numel()), mpi_type(t.dtype()), root, comm_, w->request()));
  return w;
}

namespace {
std::atomic<int64_t> g_host_collectives{0};
void count_host_collective() { g_host_collectives.fetch_add(1, std::memory_order_relaxed); }
}  // namespace

int64_t host_collectives() { return g_host_collectives.load(std::memory_order_relaxed); }

void MpiCommunicator::barrier() {
  count_host_collective();
  MpiWork w(*this, "barrier", {}, Tensor());
  COCA_MPI_CHECK(MPI_Ibarrier(comm_, w.request()));
  w.wait();
}

double MpiCommunicator::sum(double value) {
  count_host_collective();
  Tensor t = Tensor::full({1}, value, DType::f64);
  all_reduce(t, ReduceOp::Sum);
  return t.data<double>()[0];
}

std::vector<int64_t> MpiCommunicator::all_gather_value(int64_t value) {
  count_host_collective();
  Tensor in = Tensor::full({1}, 0, DType::f64), out = Tensor::empty({size_}, DType::f64);
  in.data<double>()[0] = static_cast<double>(value);  // exact below 2^53
  all_gather(in, out);
  std::vector<int64_t> v(size_);
  for (int r = 0; r < size_; ++r) v[r] = static_cast<int64_t>(out.data<double>()[r]);
  return v;
}

void MpiCommunicator::broadcast_bytes(void* data, size_t nbytes, int root) {
  COCA_CHECK(nbytes < (size_t{1} << 31), "broadcast_bytes: ", nbytes, " bytes is too many for one call");
  count_host_collective();
  MpiWork w(*this, str_cat("broadcast of ", nbytes, " bytes from rank ", root), {}, Tensor());
  COCA_MPI_CHECK(MPI_Ibcast(data, static_cast<int>(nbytes), MPI_BYTE, root, comm_, w.request()));
  w.wait();
}

std::vector<std::string> MpiCommunicator::all_gather_strings(const std::string& mine) {
  const std::vector<int64_t> sizes = all_gather_value(static_cast<int64_t>(mine.size()));
  std::vector<int> counts(size_), displs(size_);
  int64_t total = 0;
  for (int r = 0; r < size_; ++r) {
    displs[r] = static_cast<int>(total);
    counts[r] = static_cast<int>(sizes[r]);
    total += sizes[r];
  }
  COCA_CHECK(total < (int64_t{1} << 31), "all_gather_strings: ", total, " bytes is too many for one call");
  std::string all(static_cast<size_t>(total), '\0');
  MpiWork w(*this, str_cat("all-gather of ", total, " bytes of strings"), {}, Tensor());
  COCA_MPI_CHECK(MPI_Iallgatherv(mine.data(), static_cast<int>(mine.size()), MPI_CHAR, all.data(), counts.data(),
                                 displs.data(), MPI_CHAR, comm_, w.request()));
  w.wait();
  std::vector<std::string> out;
  for (int r = 0; r < size_; ++r) out.push_back(all.substr(static_cast<size_t>(displs[r]), static_cast<size_t>(counts[r])));
  return out;
}

std::shared_ptr<MpiCommunicator> init(int* argc, char*** argv, CommOptions opts) {
  int initialised = 0;
  COCA_MPI_CHECK(MPI_Initialized(&initialised));
  if (!initialised) {
    int provided = 0;
    COCA_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
    COCA_CHECK(provided >= MPI_THREAD_FUNNELED, "MPI_Init_thread: this MPI provides thread level ", provided,
               ", coca needs MPI_THREAD_FUNNELED");
    g_we_initialised = true;
    std::atexit(finalize_at_exit);
  }
  if (g_bf16_sum == MPI_OP_NULL) COCA_MPI_CHECK(MPI_Op_create(&bf16_sum, /*commute=*/1, &g_bf16_sum));
  std::set_terminate(terminate_handler);
  return std::make_shared<MpiCommunicator>(MPI_COMM_WORLD, opts);
}

void finalize() {
  int initialised = 0, finalized = 0;
  MPI_Initialized(&initialised);
  MPI_Finalized(&finalized);
  if (!initialised || finalized || !g_we_initialised) return;
  if (g_bf16_sum != MPI_OP_NULL) MPI_Op_free(&g_bf16_sum);
  for (MpiCommunicator* c : g_live) c->cancel_probes();
  MPI_Finalize();
}

void fatal(const std::string& cause, int exit_code) {
  int initialised = 0, finalized = 0;
  MPI_Initialized(&initialised);
  MPI_Finalized(&finalized);
  if (!initialised || finalized) {
    std::fprintf(stderr, "coca: failed: %s\n", cause.c_str());
    std::fflush(stderr);
    std::_Exit(exit_code);
  }
  int rank = 0, world = 1, len = 0;
  char host[MPI_MAX_PROCESSOR_NAME] = "?";
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  MPI_Get_processor_name(host, &len);
  std::fprintf(stderr, "coca: rank %d of %d on %s failed: %s; aborting the job\n", rank, world, host, cause.c_str());
  std::fflush(stderr);
  if (world == 1) std::_Exit(exit_code);  // no peer to stop: skip Open MPI's abort banner
  MPI_Abort(MPI_COMM_WORLD, exit_code);  // kills every rank; does not return
  std::_Exit(exit_code);
}

}  // namespace coca::dist
