#pragma once
// Check macros for every CUDA runtime, cuBLAS and NCCL call: a failure throws coca::Error naming
// the call, the file and the line.
#ifdef COCA_WITH_CUDA
#include <cuda_runtime.h>

#include "coca/tensor/error.h"

#define COCA_CUDA_CHECK(call)                                                                          \
  do {                                                                                                 \
    cudaError_t err_ = (call);                                                                         \
    if (err_ != cudaSuccess)                                                                           \
      throw ::coca::Error(::coca::str_cat("CUDA error ", cudaGetErrorString(err_), " in ", #call, " at ", \
                                          __FILE__, ":", __LINE__));                                   \
  } while (0)

#define COCA_CUBLAS_CHECK(call)                                                                        \
  do {                                                                                                 \
    cublasStatus_t st_ = (call);                                                                       \
    if (st_ != CUBLAS_STATUS_SUCCESS)                                                                  \
      throw ::coca::Error(::coca::str_cat("cuBLAS error ", static_cast<int>(st_), " in ", #call, " at ",   \
                                          __FILE__, ":", __LINE__));                                   \
  } while (0)

#define COCA_NCCL_CHECK(call)                                                                          \
  do {                                                                                                 \
    ncclResult_t r_ = (call);                                                                          \
    if (r_ != ncclSuccess)                                                                             \
      throw ::coca::Error(::coca::str_cat("NCCL error ", ncclGetErrorString(r_), " in ", #call, " at ",    \
                                          __FILE__, ":", __LINE__));                                   \
  } while (0)
#endif
