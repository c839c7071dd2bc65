#pragma once
// CUDA reductions (mirrors kernels/cpu/reduce.h) plus the sums the optimizer needs.
#include <vector>

#include "coca/tensor/tensor.h"

namespace coca::cuda {

void sum_middle(const Tensor& in, int64_t outer, int64_t red, int64_t inner, Tensor& out);
void max_last(const Tensor& in, int64_t rows, int64_t cols, Tensor& values, Tensor& index);
void max_last_backward(const Tensor& g, const Tensor& index, int64_t rows, int64_t cols, Tensor& out);

// The global gradient norm and its clipping scale, on the device: [sqrt(sum of squares of every
// tensor), max_norm / (norm + 1e-6) when max_norm > 0 and the norm is above it, else 1] as a
// float64 CUDA tensor of 2. Two launches (chunk sums, then the total in a fixed order) and no
// host synchronisation. Tensors contiguous, on CUDA, one dtype.
Tensor grad_norm_and_scale(const std::vector<Tensor>& ts, double max_norm);
constexpr int64_t kSquaresChunk = 65536;
// t *= s in place (contiguous float tensor).
void scale_(Tensor& t, double s);

}  // namespace coca::cuda
