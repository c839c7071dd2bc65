// CPU-only builds: the CUDA queries answer "none".
#ifndef COCA_WITH_CUDA
#include "coca/kernels/cuda/attention.h"
#include "coca/kernels/cuda/runtime.h"

#include "coca/tensor/error.h"

namespace coca::cuda {
int device_count() { return 0; }
bool built_with_cuda() { return false; }
const char* device_name() { return "none"; }
void set_device(int) { throw Error("CUDA: this build has no CUDA backend (configure with -DCOCA_CUDA=ON where CUDA is installed)"); }
int current_device() { return -1; }
void memcpy(void*, const void*, size_t, int) { throw Error("CUDA copy in a build without the CUDA backend"); }
void synchronize() {}
AllocatorStats allocator_stats() { return {}; }
void empty_cache() {}
void set_matmul_precision(MatmulPrecision) {}
MatmulPrecision matmul_precision() { return MatmulPrecision::Float32; }
void set_attention_impl(AttentionImpl) {}
AttentionImpl attention_impl() { return AttentionImpl::Auto; }
int64_t attention_fused_calls() { return 0; }
void set_profiling(bool) {}
void profile_report() {}

}  // namespace coca::cuda
#endif
