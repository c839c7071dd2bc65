#pragma once
// The CUDA backend's shared state, for .cu files only: the stream every kernel and cuBLAS call
// runs on, the cuBLAS handles, scratch memory from the caching allocator, launch helpers.
#ifdef COCA_WITH_CUDA
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "coca/kernels/cuda/check.h"
#include "coca/kernels/cuda/runtime.h"

namespace coca::cuda {

cudaStream_t stream();
cublasHandle_t cublas();
cublasLtHandle_t cublas_lt();

// The caching allocator (size-binned, per stream). Never returns null for nbytes > 0.
void* device_alloc(size_t nbytes);
void device_free(void* p);

// RAII scratch from the caching allocator.
class Scratch {
 public:
  explicit Scratch(size_t nbytes) : p_(device_alloc(nbytes)) {}
  ~Scratch() { device_free(p_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <typename T> T* as() const { return static_cast<T*>(p_); }

 private:
  void* p_;
};

// Times the kernels a backend entry point launches while profiling is on (set_profiling).
class KernelTimer {
 public:
  explicit KernelTimer(const char* family);
  ~KernelTimer();
  KernelTimer(const KernelTimer&) = delete;
  KernelTimer& operator=(const KernelTimer&) = delete;

 private:
  int slot_ = -1;
};

inline unsigned blocks_for(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > (1 << 30) ? (1 << 30) : b));
}

}  // namespace coca::cuda

// After every launch: a bad configuration or an earlier asynchronous fault is reported here.
#define COCA_CUDA_LAUNCH_CHECK() COCA_CUDA_CHECK(cudaGetLastError())
#endif
