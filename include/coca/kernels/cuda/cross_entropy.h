#pragma once
// CUDA fused cross-entropy (mirrors kernels/cpu/cross_entropy.h, but nothing waits for the device).
#include "coca/tensor/tensor.h"

namespace coca::cuda {

// out (a scalar of the logits' dtype) = the sum of the counted rows' losses / denom, and denom
// (f64 [1]) = normalizer > 0 ? normalizer : the number of counted rows (out is 0 where denom is
// 0), both written on the device. A target outside [0, C) that is not ignore_index is recorded
// on the device; check_targets() raises it.
void cross_entropy_forward(const Tensor& logits, int64_t ld, const Tensor& targets, int64_t ignore_index,
                           Tensor& lse, double normalizer, Tensor& out, Tensor& denom);
// dlogits = g / denom x (softmax - onehot), with the incoming gradient g (a scalar of the logits'
// dtype) and denom read on the device.
void cross_entropy_backward(const Tensor& logits, int64_t ld, const Tensor& targets, int64_t ignore_index,
                            const Tensor& lse, const Tensor& g, const Tensor& denom, Tensor& dlogits);
// Throws the first bad target recorded since the last call, in one line (one device-to-host copy).
void check_targets();

}  // namespace coca::cuda
