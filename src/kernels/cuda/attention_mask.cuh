#pragma once
// The attention masks as both CUDA attention paths apply them (attention.cu's tiled kernels and
// attention_gemm.cu's softmax kernels), in the CPU kernel's order: the additive mask is added to
// the scaled score, then key padding and causal masking set -inf.
#include "coca/kernels/cpu/attention.h"
#include "common.cuh"

namespace coca::cuda::detail {

template <typename T>
struct MaskParams {
  int64_t H, Tq, S;
  const T* add;  // additive mask read with the broadcast strides as0..as3, or null
  int64_t as0, as1, as2, as3;
  const uint8_t* kp;  // key padding [B, S] contiguous, nonzero = masked, or null
  bool causal;        // key j masked for query i when j > i + (S - Tq)
};

// Score s (already scaled) of query i and key j after the masks.
template <typename T>
__device__ __forceinline__ T masked(const MaskParams<T>& mp, int64_t b, int64_t h, int64_t i, int64_t j, T s) {
  if (mp.add) s += mp.add[b * mp.as0 + h * mp.as1 + i * mp.as2 + j * mp.as3];
  if (mp.kp && mp.kp[b * mp.S + j]) s = neg_inf<T>();
  if (mp.causal && j > i + (mp.S - mp.Tq)) s = neg_inf<T>();
  return s;
}

// The masks of one call, checked to be on the GPU.
template <typename T>
MaskParams<T> mask_params(const kernels::AttentionArgs& a) {
  MaskParams<T> mp{};
  mp.H = a.H, mp.Tq = a.T, mp.S = a.S;
  if (a.additive.defined()) {
    COCA_CHECK(a.additive.device() == Device::CUDA, "attention (CUDA): the additive mask is not on the GPU");
    mp.add = dptr<T>(a.additive);
    mp.as0 = a.additive_strides[0], mp.as1 = a.additive_strides[1], mp.as2 = a.additive_strides[2],
    mp.as3 = a.additive_strides[3];
  }
  if (a.key_padding.defined()) {
    COCA_CHECK(a.key_padding.device() == Device::CUDA, "attention (CUDA): the key padding mask is not on the GPU");
    mp.kp = dptr<uint8_t>(a.key_padding);
  }
  mp.causal = a.causal;
  return mp;
}

}  // namespace coca::cuda::detail
