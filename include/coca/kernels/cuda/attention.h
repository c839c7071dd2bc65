#pragma once
// CUDA attention (mirrors kernels/cpu/attention.h), in three implementations:
//  - fused (attention_fused.cu): for CoCa's short sequences (float32, head dim <= 64, K and V of
//    a head within a block's shared memory: S up to ~340 at D = 64 on sm_90), one head's K and V
//    and a query tile's scores in shared memory, forward writing only O and the log-sum-exp,
//    backward recomputing P and accumulating dK / dV in one block per head: no [B*H, T, S]
//    global scratch, no atomics, deterministic;
//  - tiled: a fused kernel over key tiles with an online softmax, so no [T, S] buffer exists
//    for any sequence length (head dim up to 256);
//  - gemm: for short key lengths, the matrix work on the tensor cores through cuBLAS batched
//    GEMMs, with [B*H, T, S] float scratch and one-warp-per-row softmax kernels (the parity
//    reference of the fused kernels).
// attention_forward / attention_backward pick one per call: see set_attention_impl.
#include "coca/kernels/args.h"

namespace coca::cuda {

void attention_forward(const kernels::AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v, Tensor& o,
                       Tensor& lse);
void attention_backward(const kernels::AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v,
                        const Tensor& o, const Tensor& lse, const Tensor& dout, Tensor& dq, Tensor& dk,
                        Tensor& dv);

// Which implementation attention_forward / attention_backward use.
//  Auto (the default): the environment variable COCA_CUDA_ATTENTION (read once) when it is
//    "fused", "tiled" or "gemm"; otherwise, at fp32 or tf32 matmul precision, fused where it
//    applies (float32, D <= 64, shared memory within the device's limit; not under bf16
//    precision until it is timed against the tensor-core GEMMs), else gemm when S <= 512 and the backward's
//    [B*H, T, S] scratch is under 1 GiB, else tiled.
//  Fused / Tiled / Gemm: that one (the environment is ignored). Fused falls back to the Auto
//    rule for what it cannot run (float64, D > 64, long key lengths); Gemm falls back to tiled
//    for what it cannot run: S > 512, an empty dimension, or operand strides cuBLAS cannot take.
//  COCA_CUDA_ATTENTION=gemm is the parity reference for the fused kernels.
// A no-op in a build without the CUDA backend.
enum class AttentionImpl { Auto, Tiled, Gemm, Fused };
void set_attention_impl(AttentionImpl impl);
AttentionImpl attention_impl();

// How many attention_forward / attention_backward calls of this process ran the fused
// kernels (for tests that check the dispatch); 0 in a build without the CUDA backend.
int64_t attention_fused_calls();

}  // namespace coca::cuda
