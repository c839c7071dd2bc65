#pragma once
// CUDA fused cross-entropy (mirrors kernels/cpu/cross_entropy.h).
#include "coca/tensor/tensor.h"

namespace coca::cuda {

// Waits for the result (the loss is returned to the host, like the CPU kernel).
double cross_entropy_forward(const Tensor& logits, int64_t ld, const Tensor& targets, int64_t ignore_index,
                             Tensor& lse, int64_t& count);
void cross_entropy_backward(const Tensor& logits, int64_t ld, const Tensor& targets, int64_t ignore_index,
                            const Tensor& lse, double scale, Tensor& dlogits);

}  // namespace coca::cuda
