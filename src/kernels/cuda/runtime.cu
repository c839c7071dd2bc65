// CUDA runtime pieces: the library stream, cuBLAS handles, the caching device allocator, pinned
// host staging for copies, and the storage hooks the tensor layer calls.
#include <nccl.h>

#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>

#include "coca/kernels/cuda/context.h"

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
State& state() {
  static State s;
  std::call_once(s.once, [] {
    COCA_CUDA_CHECK(cudaSetDevice(0));
    COCA_CUDA_CHECK(cudaGetDeviceProperties(&s.prop, 0));
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
  void* alloc(size_t nbytes, cudaStream_t s) {
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

}  // namespace

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

const char* device_name() { return device_count() > 0 ? state().prop.name : "none"; }

void synchronize() { COCA_CUDA_CHECK(cudaStreamSynchronize(stream())); }

void memcpy(void* dst, const void* src, size_t nbytes, int kind) {
  if (nbytes == 0) return;
  cudaStream_t s = stream();
  if (kind == 2) {
    COCA_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, s));
    return;
  }
  // Through pinned staging: pageable copies would serialise with the stream anyway, and the
  // pinned buffer makes the transfer run at full PCIe rate.
  Staging& st = staging();
  std::lock_guard<std::mutex> lock(st.mu);
  void* pinned = st.get(nbytes);
  if (kind == 0) {
    COCA_CUDA_CHECK(cudaStreamSynchronize(s));  // the previous staged copy has left the buffer
    std::memcpy(pinned, src, nbytes);
    COCA_CUDA_CHECK(cudaMemcpyAsync(dst, pinned, nbytes, cudaMemcpyHostToDevice, s));
    COCA_CUDA_CHECK(cudaStreamSynchronize(s));
  } else {
    COCA_CUDA_CHECK(cudaMemcpyAsync(pinned, src, nbytes, cudaMemcpyDeviceToHost, s));
    COCA_CUDA_CHECK(cudaStreamSynchronize(s));
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
