#pragma once
// The fused short-sequence implementation of CUDA attention (attention_fused.cu), for
// attention.cu's dispatch: SIMT kernels with a whole head's K and V in shared memory, no
// [B*H, T, S] scratch in global memory.
#include <initializer_list>

#include "coca/kernels/cpu/attention.h"

namespace coca::cuda::detail {

// Largest head dim the fused kernels take.
constexpr int64_t kFusedAttentionMaxHeadDim = 64;

// Shared memory (bytes) of one block of the fused forward / backward kernel for this call.
size_t attention_fused_forward_smem(const kernels::AttentionArgs& a);
size_t attention_fused_backward_smem(const kernels::AttentionArgs& a);

// Whether the fused kernels can run this call: float32 operands, every dimension nonzero,
// D <= 64, B and H within the grid's 65535, every [B, H, rows, D] operand with a unit last-dim
// stride, and the forward's and the backward's shared memory within the device's per-block
// opt-in limit: for D = 64 the backward takes 4 (130 S + 32 (S | 1) + 2080) bytes, so S up to
// about 340 keys on sm_90 (227 KiB).
bool attention_fused_supported(const kernels::AttentionArgs& a, DType dt,
                               std::initializer_list<const Tensor*> operands);

void attention_fused_forward(const kernels::AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v,
                             Tensor& o, Tensor& lse);
void attention_fused_backward(const kernels::AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v,
                              const Tensor& o, const Tensor& lse, const Tensor& dout, Tensor& dq, Tensor& dk,
                              Tensor& dv);

}  // namespace coca::cuda::detail
