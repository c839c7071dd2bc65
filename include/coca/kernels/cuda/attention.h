#pragma once
// CUDA fused attention (mirrors kernels/cpu/attention.h): tiled over keys with an online
// softmax, so no [T, S] buffer exists for any sequence length. Head dim up to 256.
#include "coca/kernels/cpu/attention.h"

namespace coca::cuda {

void attention_forward(const cpu::AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v, Tensor& o,
                       Tensor& lse);
void attention_backward(const cpu::AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v,
                        const Tensor& o, const Tensor& lse, const Tensor& dout, Tensor& dq, Tensor& dk,
                        Tensor& dv);

}  // namespace coca::cuda
