#pragma once
// Fused AdamW update on the GPU (one pass over p, m, v, g), PyTorch's update order.
#include <vector>

#include "coca/tensor/tensor.h"

namespace coca::cuda {

void adamw_step(Tensor& p, Tensor& m, Tensor& v, const Tensor& g, double beta1, double beta2, double eps,
                double decay, double step_size, double bc2_sqrt);

// Every parameter in one launch (one block per chunk of kAdamWChunk elements of a tensor; all
// of one dtype, contiguous, on CUDA). norm_scale: undefined, or grad_norm_and_scale's [norm,
// scale] on the device, the scale applied to each gradient as it is read (the gradients stay
// as they are): the same values as clip_grad_norm then adamw_step per tensor, with no host
// synchronisation between the norm and the update.
struct AdamWTensors {
  Tensor p, m, v, g;
  double decay;  // 1 - lr * weight_decay, or 1
};
constexpr int64_t kAdamWChunk = 65536;
void adamw_step_many(const std::vector<AdamWTensors>& ts, double beta1, double beta2, double eps, double step_size,
                     double bc2_sqrt, const Tensor& norm_scale);

}  // namespace coca::cuda
