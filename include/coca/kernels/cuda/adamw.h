#pragma once
// Fused AdamW update on the GPU (one pass over p, m, v, g), PyTorch's update order.
#include "coca/tensor/tensor.h"

namespace coca::cuda {

void adamw_step(Tensor& p, Tensor& m, Tensor& v, const Tensor& g, double beta1, double beta2, double eps,
                double decay, double step_size, double bc2_sqrt);

}  // namespace coca::cuda
