#pragma once
// Analytic FLOPs of one CoCa forward pass per sample (2 FLOPs per multiply-add of every matrix
// product: projections, MLPs, attention scores and values, pooler, vocabulary projection).
// Training is counted as 3x the forward.
#include "coca/model/config.h"

namespace coca {

double forward_flops_per_sample(const CocaConfig& cfg);

}  // namespace coca
