#pragma once
// CUDA attention (mirrors kernels/cpu/attention.h), in two implementations:
//  - tiled: a fused kernel over key tiles with an online softmax, so no [T, S] buffer exists
//    for any sequence length (head dim up to 256);
//  - gemm: for short key lengths, the matrix work on the tensor cores through cuBLAS batched
//    GEMMs, with [B*H, T, S] float scratch and one-warp-per-row softmax kernels.
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
//    "tiled" or "gemm"; otherwise gemm when S <= 512 and the backward's [B*H, T, S] scratch
//    is under 1 GiB, else tiled.
//  Tiled / Gemm: that one (the environment is ignored). Gemm still falls back to tiled for what
//    it cannot run: S > 512, an empty dimension, or operand strides cuBLAS cannot take.
// A no-op in a build without the CUDA backend.
enum class AttentionImpl { Auto, Tiled, Gemm };
void set_attention_impl(AttentionImpl impl);
AttentionImpl attention_impl();

}  // namespace coca::cuda
