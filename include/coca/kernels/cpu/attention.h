#pragma once
#include "coca/tensor/tensor.h"

namespace coca::cpu {

// Geometry of one attention call. q/k/v/o are [B, H, rows, D] with a contiguous last dim and
// arbitrary other strides; masks as in coca::AttentionMask (additive broadcast to [B,H,T,S]).
struct AttentionArgs {
  int64_t B = 0, H = 0, T = 0, S = 0, D = 0;
  double scale = 1.0;
  bool causal = false;
  Tensor additive;              // optional, dtype of q
  Shape additive_strides;       // broadcast to [B, H, T, S]
  Tensor key_padding;           // optional u8 [B, S] contiguous, nonzero = masked
};

// o [B, H, T, D] (any strides with contiguous last dim), lse [B, H, T] contiguous.
void attention_forward(const AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v, Tensor& o,
                       Tensor& lse);
// Gradients dq/dk/dv have the same geometry rules as their inputs and are fully overwritten.
void attention_backward(const AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v,
                        const Tensor& o, const Tensor& lse, const Tensor& dout, Tensor& dq, Tensor& dk,
                        Tensor& dv);

}  // namespace coca::cpu
