#pragma once
// The GEMM implementation of CUDA attention (attention_gemm.cu), for attention.cu's dispatch.
#include <initializer_list>

#include "coca/kernels/cpu/attention.h"

namespace coca::cuda::detail {

// Longest key length the GEMM path's softmax kernels take (16 values per lane).
constexpr int64_t kGemmAttentionMaxKeys = 512;

// Bytes of [B*H, T, S] scratch a backward through the GEMM path takes for dtype dt under the
// current matmul precision (the forward takes less); what the size rule compares with 1 GiB.
int64_t attention_gemm_scratch_bytes(const kernels::AttentionArgs& a, DType dt);

// Whether the GEMM path can run this call: every dimension nonzero, S <= kGemmAttentionMaxKeys,
// sizes within cuBLAS's int arguments, and each [B, H, rows, D] operand with a unit last-dim
// stride and a row stride of at least D (rows is T for q, o, dout, dq; S for k, v, dk, dv).
bool attention_gemm_supported(const kernels::AttentionArgs& a, std::initializer_list<const Tensor*> q_like,
                              std::initializer_list<const Tensor*> k_like);

void attention_gemm_forward(const kernels::AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v, Tensor& o,
                            Tensor& lse);
void attention_gemm_backward(const kernels::AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v,
                             const Tensor& o, const Tensor& lse, const Tensor& dout, Tensor& dq, Tensor& dk,
                             Tensor& dv);

}  // namespace coca::cuda::detail
