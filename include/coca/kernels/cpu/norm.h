#pragma once
#include "coca/tensor/tensor.h"

namespace coca::cpu {

// Layer norm over the last dim of contiguous x [R, C]; weight/bias [C] may be undefined.
// Saves mean [R] and rstd [R] for the backward.
void layer_norm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, Tensor& y,
                        Tensor& mean, Tensor& rstd);
// dx [R, C]; dweight/dbias [C] (skipped when undefined).
void layer_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& mean, const Tensor& rstd,
                         const Tensor& dy, Tensor& dx, Tensor& dweight, Tensor& dbias);

// Row-wise L2 normalisation of contiguous [R, C]: y = x / max(||x||, eps); saves norm [R].
void l2_normalize_forward(const Tensor& x, double eps, Tensor& y, Tensor& norm);
void l2_normalize_backward(const Tensor& y, const Tensor& norm, const Tensor& dy, double eps, Tensor& dx);

}  // namespace coca::cpu
