#pragma once
// CUDA embedding gather and scatter-add (mirrors kernels/cpu/embedding.h).
#include "coca/tensor/tensor.h"

namespace coca::cuda {

// Throws naming the first position of an index outside [0, V) (checked on the device).
void embedding_forward(const Tensor& weight, const Tensor& idx, Tensor& out);
// dweight is zeroed here, then rows are accumulated with atomics.
void embedding_backward(const Tensor& g, const Tensor& idx, Tensor& dweight);

}  // namespace coca::cuda
