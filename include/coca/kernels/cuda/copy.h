#pragma once
// CUDA copies and fills (mirrors kernels/cpu/copy.h). Both tensors on the GPU.
#include "coca/tensor/tensor.h"

namespace coca::cuda {

// dst[i] = convert(src[i]) for every logical index; any strides, any dtypes, same shape.
void copy_strided(Tensor& dst, const Tensor& src);
// Every element of dst (any strides) set to value.
void fill(Tensor& dst, double value);

}  // namespace coca::cuda
