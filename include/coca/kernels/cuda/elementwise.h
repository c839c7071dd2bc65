#pragma once
// CUDA elementwise kernels (mirrors kernels/cpu/elementwise.h).
#include "coca/kernels/args.h"

namespace coca::cuda {

using kernels::BinaryOp;
using kernels::UnaryOp;

void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out);
void unary(UnaryOp op, const Tensor& a, Tensor& out, double s0 = 0, double s1 = 0);
void gelu_backward(const Tensor& x, const Tensor& grad_out, Tensor& grad_in);
void clamp_backward(const Tensor& x, const Tensor& grad_out, Tensor& grad_in, double lo, double hi);

}  // namespace coca::cuda
