#pragma once
// Argument types that every kernel backend (kernels/cpu/, kernels/cuda/) takes: the op
// families' enums and call geometries. Backend-neutral, so that neither backend's headers
// depend on the other's.
#include "coca/tensor/tensor.h"

namespace coca::kernels {

enum class BinaryOp { Add, Sub, Mul, Div };
enum class UnaryOp { Neg, Exp, Log, Sqrt, Rsqrt, Tanh, Gelu, AddScalar, MulScalar, PowScalar, Clamp };

// A strided 2-D operand as BLAS (or cuBLAS) sees it: row-major with leading dimension ld, or
// its transpose.
struct GemmOperand {
  bool trans = false;
  int64_t ld = 0;
};

// Geometry of one attention call. q/k/v/o are [B, H, rows, D] with a contiguous last dim and
// arbitrary other strides; masks as in coca::AttentionMask (additive broadcast to [B,H,T,S]).
struct AttentionArgs {
  int64_t B = 0, H = 0, T = 0, S = 0, D = 0;
  double scale = 1.0;
  bool causal = false;
  Tensor additive;              // optional, dtype of q
  Shape additive_strides;       // broadcast to [B, H, T, S]
  Tensor key_padding;           // optional u8 [B, S] contiguous, nonzero = masked
};

}  // namespace coca::kernels
