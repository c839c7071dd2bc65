#pragma once
#include "coca/tensor/tensor.h"

namespace coca::cpu {

// Row-wise over contiguous [rows, cols]; stable (max subtracted).
void softmax_rows(const Tensor& x, Tensor& y, bool log);
// softmax: dx = y * (g - sum(g*y));  log_softmax: dx = g - exp(y) * sum(g).
void softmax_rows_backward(const Tensor& y, const Tensor& g, Tensor& dx, bool log);

}  // namespace coca::cpu
