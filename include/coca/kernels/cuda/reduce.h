#pragma once
// CUDA reductions (mirrors kernels/cpu/reduce.h) plus the sums the optimizer needs.
#include "coca/tensor/tensor.h"

namespace coca::cuda {

void sum_middle(const Tensor& in, int64_t outer, int64_t red, int64_t inner, Tensor& out);
void max_last(const Tensor& in, int64_t rows, int64_t cols, Tensor& values, Tensor& index);
void max_last_backward(const Tensor& g, const Tensor& index, int64_t rows, int64_t cols, Tensor& out);

// sum of squares of a contiguous float tensor, accumulated in float64 (for the grad norm).
double sum_squares(const Tensor& t);
// The same over many tensors with one host synchronisation (the global gradient norm).
double sum_squares_many(const std::vector<Tensor>& ts);
// t *= s in place (contiguous float tensor).
void scale_(Tensor& t, double s);

}  // namespace coca::cuda
