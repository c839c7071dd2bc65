// CUDA storage and device queries. The full backend (caching allocator, kernels per op family,
// cuBLAS matmuls) lands with the CUDA-backend issue; this file is what the tensor layer needs now.
#include <cublas_v2.h>
#include <nccl.h>

#include "coca/kernels/cuda/check.h"
#include "coca/kernels/cuda/runtime.h"

namespace coca {

void* cuda_storage_alloc(size_t nbytes) {
  void* p = nullptr;
  if (nbytes) COCA_CUDA_CHECK(cudaMalloc(&p, nbytes));
  return p;
}

void cuda_storage_free(void* p) {
  if (p) cudaFree(p);  // in a destructor: never throws
}

namespace cuda {

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

bool built_with_cuda() { return true; }

// Linked now so that a toolkit without cuBLAS or NCCL fails the build, not a later run.
int library_versions(int* cublas_version, int* nccl_version) {
  cublasHandle_t h;
  COCA_CUBLAS_CHECK(cublasCreate(&h));
  COCA_CUBLAS_CHECK(cublasGetVersion(h, cublas_version));
  COCA_CUBLAS_CHECK(cublasDestroy(h));
  COCA_NCCL_CHECK(ncclGetVersion(nccl_version));
  return 0;
}

}  // namespace cuda
}  // namespace coca
