#pragma once
#include "coca/kernels/args.h"

namespace coca::cpu {

using kernels::BinaryOp;
using kernels::UnaryOp;

// out = a (op) b with broadcasting; out has the broadcast shape and is contiguous.
void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out);
// out = f(a); s0/s1 are the scalar parameters (AddScalar/MulScalar/PowScalar: s0; Clamp: s0, s1).
void unary(UnaryOp op, const Tensor& a, Tensor& out, double s0 = 0, double s1 = 0);
// grad_in = grad_out * gelu'(x), the exact (erf) GELU.
void gelu_backward(const Tensor& x, const Tensor& grad_out, Tensor& grad_in);
// y = gelu(h + bias) over rows: h, y contiguous [R, C], bias contiguous [C].
void bias_gelu_forward(const Tensor& h, const Tensor& bias, Tensor& y);
// dh = dy * gelu'(h + bias) and dbias = sum over rows of dh, in one pass (h, dy, dh contiguous
// [R, C]; dbias [C]). The column sums are per-thread partials added in thread order.
void bias_gelu_backward(const Tensor& h, const Tensor& bias, const Tensor& dy, Tensor& dh, Tensor& dbias);
// grad_in = grad_out where lo <= x <= hi, else 0.
void clamp_backward(const Tensor& x, const Tensor& grad_out, Tensor& grad_in, double lo, double hi);

}  // namespace coca::cpu
