// CUDA runtime pieces: the library stream, cuBLAS handles, the caching device allocator, pinned
// host staging for copies, and the storage hooks the tensor layer calls.
#include <nccl.h>

#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <vector>
#include <mutex>
#include <unordered_map>
#include <atomic>

#include "coca/kernels/cuda/context.h"
#include "coca/tensor/tensor.h"

namespace coca {

namespace cuda {

namespace {

struct State {
  std::once_flag once;
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  cublasLtHandle_t lt = nullptr;
  cudaDeviceProp prop{};
};
// The GPU this process uses (set_device before the first CUDA work; 0 otherwise).
std::atomic<int> g_device{0};
std::atomic<bool> g_state_made{false};

State& state() {
  static State s;
  std::call_once(s.once, [] {
    const int dev = g_device.load();
    COCA_CUDA_CHECK(cudaSetDevice(dev));
    COCA_CUDA_CHECK(cudaGetDeviceProperties(&s.prop, dev));
    g_state_made = true;
    COCA_CUDA_CHECK(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
    COCA_CUBLAS_CHECK(cublasCreate(&s.blas));
    COCA_CUBLAS_CHECK(cublasSetStream(s.blas, s.stream));
    // Float32 parity: no TF32 unless asked for (set_matmul_precision).
    COCA_CUBLAS_CHECK(cublasSetMathMode(s.blas, CUBLAS_PEDANTIC_MATH));
    COCA_CUBLAS_CHECK(cublasLtCreate(&s.lt));
  });
  return s;
}

MatmulPrecision g_precision = MatmulPrecision::Float32;

// ---- caching allocator ---------------------------------------------------------------
// Blocks are binned by rounded size (512 B steps up to 1 MiB, 2 MiB steps above) and kept per
// stream; a freed block goes back to its bin, so the steady state of a training loop (the same
// sizes every step) makes no driver calls.
class CachingAllocator {
 public:
  // COCA_CUDA_NO_CACHE=1: exact-size cudaMalloc/cudaFree per tensor, so that compute-sanitizer
  // sees every out-of-bounds access (a cached, rounded-up block would hide small overruns).
  CachingAllocator() : no_cache_(std::getenv("COCA_CUDA_NO_CACHE") != nullptr) {}

  void* alloc(size_t nbytes, cudaStream_t s) {
    if (no_cache_) {
      void* p = nullptr;
      COCA_CUDA_CHECK(cudaMalloc(&p, nbytes));
      std::lock_guard<std::mutex> lock(mu_);
      stats_.driver_allocs++;
      return p;
    }
    const size_t size = round(nbytes);
    std::lock_guard<std::mutex> lock(mu_);
    auto& bins = free_[s];
    auto it = bins.lower_bound(size);
    if (it != bins.end() && it->first <= size + size / 4 + 512) {
      void* p = it->second;
      bins.erase(it);
      stats_.cache_hits++;
      stats_.allocated += live_[p].size;
      return p;
    }
    void* p = nullptr;
    cudaError_t err = cudaMalloc(&p, size);
    if (err != cudaSuccess) {  // out of memory: give the cache back and try once more
      cudaGetLastError();
      release_all();
      COCA_CUDA_CHECK(cudaMalloc(&p, size));
    }
    stats_.driver_allocs++;
    stats_.reserved += size;
    stats_.allocated += size;
    live_[p] = {size, s};
    return p;
  }
  void free(void* p) {
    if (!p) return;
    if (no_cache_) {
      cudaFree(p);  // in a destructor: never throws
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(p);
    if (it == live_.end()) return;
    stats_.allocated -= it->second.size;
    free_[it->second.stream].emplace(it->second.size, p);
  }
  void release_all() {
    for (auto& [s, bins] : free_)
      for (auto& [size, p] : bins) {
        cudaFree(p);
        live_.erase(p);
        stats_.reserved -= size;
      }
    free_.clear();
  }
  void empty() {
    std::lock_guard<std::mutex> lock(mu_);
    COCA_CUDA_CHECK(cudaStreamSynchronize(state().stream));
    release_all();
  }
  AllocatorStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

 private:
  static size_t round(size_t n) {
    if (n <= (1u << 20)) return ((n + 511) / 512) * 512;
    const size_t g = 2u << 20;
    return ((n + g - 1) / g) * g;
  }
  struct Block {
    size_t size;
    cudaStream_t stream;
  };
  const bool no_cache_;
  std::mutex mu_;
  std::unordered_map<void*, Block> live_;  // every block we own, handed out or cached
  std::map<cudaStream_t, std::multimap<size_t, void*>> free_;
  AllocatorStats stats_;
};

CachingAllocator& allocator() {
  static auto* a = new CachingAllocator();  // leaked: outlives every static tensor
  return *a;
}

// Pinned host staging buffer for host<->device copies (grows, never shrinks).
struct Staging {
  std::mutex mu;
  void* host = nullptr;
  size_t size = 0;
  cudaEvent_t done = nullptr;  // recorded after the last copy that reads or writes the buffer
  // Waits until no queued copy uses the buffer.
  void wait() {
    if (done) COCA_CUDA_CHECK(cudaEventSynchronize(done));
  }
  void mark(cudaStream_t s) {
    if (!done) COCA_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    COCA_CUDA_CHECK(cudaEventRecord(done, s));
  }
  void* get(size_t n) {
    if (n > size) {
      if (host) COCA_CUDA_CHECK(cudaFreeHost(host));
      size = std::max(n, size * 2);
      COCA_CUDA_CHECK(cudaMallocHost(&host, size));
    }
    return host;
  }
};
Staging& staging() {
  static auto* s = new Staging();
  return *s;
}

// Event pairs recorded while profiling; reused across reports.
struct Profile {
  bool on = false;
  std::mutex mu;
  std::vector<std::pair<const char*, std::pair<cudaEvent_t, cudaEvent_t>>> records;
  size_t used = 0;
};
Profile& profile() {
  static auto* p = new Profile();
  return *p;
}

}  // namespace

KernelTimer::KernelTimer(const char* family) {
  Profile& p = profile();
  if (!p.on) return;
  std::lock_guard<std::mutex> lock(p.mu);
  if (p.used == p.records.size()) {
    cudaEvent_t a, b;
    COCA_CUDA_CHECK(cudaEventCreate(&a));
    COCA_CUDA_CHECK(cudaEventCreate(&b));
    p.records.push_back({family, {a, b}});
  }
  slot_ = static_cast<int>(p.used++);
  p.records[slot_].first = family;
  COCA_CUDA_CHECK(cudaEventRecord(p.records[slot_].second.first, stream()));
}

KernelTimer::~KernelTimer() {
  if (slot_ < 0) return;
  Profile& p = profile();
  std::lock_guard<std::mutex> lock(p.mu);
  cudaEventRecord(p.records[slot_].second.second, stream());  // in a destructor: never throws
}

void set_profiling(bool on) { profile().on = on; }

void profile_report() {
  Profile& p = profile();
  COCA_CUDA_CHECK(cudaStreamSynchronize(stream()));
  std::lock_guard<std::mutex> lock(p.mu);
  std::map<std::string, std::pair<double, int>> per_family;
  double total = 0;
  for (size_t i = 0; i < p.used; ++i) {
    float ms = 0;
    COCA_CUDA_CHECK(cudaEventElapsedTime(&ms, p.records[i].second.first, p.records[i].second.second));
    auto& e = per_family[p.records[i].first];
    e.first += ms;
    e.second += 1;
    total += ms;
  }
  std::vector<std::pair<double, std::string>> rows;
  for (auto& [name, e] : per_family) rows.push_back({e.first, name});
  std::sort(rows.rbegin(), rows.rend());
  std::printf("[profile] %zu timed calls, %.2f ms of GPU time in backend entry points\n", p.used, total);
  for (auto& [ms, name] : rows)
    std::printf("[profile] %-28s %8.2f ms %6d calls %5.1f%%\n", name.c_str(), ms, per_family[name].second,
                100 * ms / std::max(total, 1e-9));
  p.used = 0;
}

cudaStream_t stream() { return state().stream; }
cublasHandle_t cublas() { return state().blas; }
cublasLtHandle_t cublas_lt() { return state().lt; }

void* device_alloc(size_t nbytes) { return nbytes ? allocator().alloc(nbytes, stream()) : nullptr; }
void device_free(void* p) { allocator().free(p); }

AllocatorStats allocator_stats() { return allocator().stats(); }
void empty_cache() { allocator().empty(); }

void set_matmul_precision(MatmulPrecision p) {
  g_precision = p;
  const cublasMath_t mode = p == MatmulPrecision::Tf32    ? CUBLAS_TF32_TENSOR_OP_MATH
                            : p == MatmulPrecision::Bf16 ? CUBLAS_DEFAULT_MATH
                                                         : CUBLAS_PEDANTIC_MATH;
  COCA_CUBLAS_CHECK(cublasSetMathMode(cublas(), mode));
}
MatmulPrecision matmul_precision() { return g_precision; }

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

bool built_with_cuda() { return true; }

void set_device(int device) {
  const int n = device_count();
  COCA_CHECK(device >= 0 && device < n, "CUDA: GPU ", device, " asked for, but this host has ", n, " visible GPU(s)");
  COCA_CHECK(!g_state_made.load() || g_device.load() == device, "CUDA: GPU ", device,
             " asked for after the backend started on GPU ", g_device.load());
  g_device = device;
  COCA_CUDA_CHECK(cudaSetDevice(device));
}

int current_device() { return g_device.load(); }

const char* device_name() { return device_count() > 0 ? state().prop.name : "none"; }

void synchronize() { COCA_CUDA_CHECK(cudaStreamSynchronize(stream())); }

void memcpy(void* dst, const void* src, size_t nbytes, int kind) {
  if (nbytes == 0) return;
  KernelTimer timer(kind == 0 ? "memcpy_h2d" : kind == 1 ? "memcpy_d2h" : "memcpy_d2d");
  cudaStream_t s = stream();
  if (kind == 2) {
    COCA_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, s));
    return;
  }
  // Through pinned staging: pageable copies would serialise with the stream anyway, and the
  // pinned buffer makes the transfer run at full PCIe rate.
  Staging& st = staging();
  std::lock_guard<std::mutex> lock(st.mu);
  st.wait();  // the previous staged copy has left the buffer
  void* pinned = st.get(nbytes);
  if (kind == 0) {
    // Host -> device does not wait for the stream: the source is already in the pinned buffer.
    std::memcpy(pinned, src, nbytes);
    COCA_CUDA_CHECK(cudaMemcpyAsync(dst, pinned, nbytes, cudaMemcpyHostToDevice, s));
    st.mark(s);
  } else {
    COCA_CUDA_CHECK(cudaMemcpyAsync(pinned, src, nbytes, cudaMemcpyDeviceToHost, s));
    COCA_CUDA_CHECK(cudaStreamSynchronize(s));
    count_device_to_host_copy();
    std::memcpy(dst, pinned, nbytes);
  }
}

// Linked now so that a toolkit without cuBLAS or NCCL fails the build, not a later run.
int library_versions(int* cublas_version, int* nccl_version) {
  COCA_CUBLAS_CHECK(cublasGetVersion(cublas(), cublas_version));
  COCA_NCCL_CHECK(ncclGetVersion(nccl_version));
  return 0;
}

}  // namespace cuda

void* cuda_storage_alloc(size_t nbytes) { return cuda::device_alloc(nbytes); }
void cuda_storage_free(void* p) { cuda::device_free(p); }  // in a destructor: never throws

}  // namespace coca
