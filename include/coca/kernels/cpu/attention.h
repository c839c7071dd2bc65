#pragma once
#include "coca/kernels/args.h"

namespace coca::cpu {

using kernels::AttentionArgs;

// o [B, H, T, D] (any strides with contiguous last dim), lse [B, H, T] contiguous.
void attention_forward(const AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v, Tensor& o,
                       Tensor& lse);
// Gradients dq/dk/dv have the same geometry rules as their inputs and are fully overwritten.
void attention_backward(const AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v,
                        const Tensor& o, const Tensor& lse, const Tensor& dout, Tensor& dq, Tensor& dk,
                        Tensor& dv);

}  // namespace coca::cpu
