#pragma once
#include "coca/tensor/tensor.h"

namespace coca::cpu {

// in: contiguous, viewed as [outer, red, inner]; out: contiguous [outer, inner] = sum over red.
void sum_middle(const Tensor& in, int64_t outer, int64_t red, int64_t inner, Tensor& out);
// in: contiguous [rows, cols]; values[r] = max, index[r] = first argmax (i32).
void max_last(const Tensor& in, int64_t rows, int64_t cols, Tensor& values, Tensor& index);
// out: contiguous [rows, cols] zero-filled except out[r, index[r]] = g[r].
void max_last_backward(const Tensor& g, const Tensor& index, int64_t rows, int64_t cols, Tensor& out);

}  // namespace coca::cpu
