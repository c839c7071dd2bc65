#pragma once
// CUDA layer norm and L2 normalisation (mirrors kernels/cpu/norm.h).
#include "coca/tensor/tensor.h"

namespace coca::cuda {

void layer_norm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, Tensor& y,
                        Tensor& mean, Tensor& rstd);
void layer_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& mean, const Tensor& rstd,
                         const Tensor& dy, Tensor& dx, Tensor& dweight, Tensor& dbias);
void l2_normalize_forward(const Tensor& x, double eps, Tensor& y, Tensor& norm);
void l2_normalize_backward(const Tensor& y, const Tensor& norm, const Tensor& dy, double eps, Tensor& dx);

}  // namespace coca::cuda
