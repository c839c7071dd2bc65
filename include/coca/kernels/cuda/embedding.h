#pragma once
// CUDA embedding gather and scatter-add (mirrors kernels/cpu/embedding.h).
#include "coca/tensor/tensor.h"

namespace coca::cuda {

// Rows of an index outside [0, V) are zeros; the first such position is kept on the device (no
// wait) and check_indices() raises it.
void embedding_forward(const Tensor& weight, const Tensor& idx, Tensor& out);
// dweight is zeroed here, then rows are accumulated with atomics (bad indices add nothing).
void embedding_backward(const Tensor& g, const Tensor& idx, Tensor& dweight);
// Throws naming the first bad index gathered since the last call (one device-to-host copy).
void check_indices();

}  // namespace coca::cuda
