#pragma once
// CUDA row softmax (mirrors kernels/cpu/softmax.h).
#include "coca/tensor/tensor.h"

namespace coca::cuda {

void softmax_rows(const Tensor& x, Tensor& y, bool log);
void softmax_rows_backward(const Tensor& y, const Tensor& g, Tensor& dx, bool log);

}  // namespace coca::cuda
