// CPU-only builds: the CUDA queries answer "none".
#ifndef COCA_WITH_CUDA
#include "coca/kernels/cuda/runtime.h"

namespace coca::cuda {
int device_count() { return 0; }
bool built_with_cuda() { return false; }
}  // namespace coca::cuda
#endif
