// CPU-only builds: the CUDA queries answer "none".
#ifndef COCA_WITH_CUDA
#include "coca/kernels/cuda/runtime.h"

#include "coca/tensor/error.h"

namespace coca::cuda {
int device_count() { return 0; }
bool built_with_cuda() { return false; }
const char* device_name() { return "none"; }
void memcpy(void*, const void*, size_t, int) { throw Error("CUDA copy in a build without the CUDA backend"); }
void synchronize() {}
AllocatorStats allocator_stats() { return {}; }
void empty_cache() {}
void set_matmul_precision(MatmulPrecision) {}
MatmulPrecision matmul_precision() { return MatmulPrecision::Float32; }
}  // namespace coca::cuda
#endif
