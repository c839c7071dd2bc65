#pragma once
#include "coca/tensor/tensor.h"

namespace coca::cpu {

// out[i, :] = weight[idx[i], :]; weight contiguous [V, D], idx i32 [n], out contiguous [n, D].
// Throws naming the position of any index outside [0, V).
void embedding_forward(const Tensor& weight, const Tensor& idx, Tensor& out);
// dweight (zero-initialised here) [V, D] += scatter of g [n, D] at idx.
void embedding_backward(const Tensor& g, const Tensor& idx, Tensor& dweight);

}  // namespace coca::cpu
