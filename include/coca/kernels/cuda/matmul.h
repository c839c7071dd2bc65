#pragma once
// cuBLAS matrix products (mirrors kernels/cpu/matmul.h). Float32 runs without TF32 unless
// set_matmul_precision asks for it; MatmulPrecision::Bf16 casts the operands to bf16 and
// accumulates in float32.
#include "coca/kernels/args.h"

namespace coca::cuda {

void gemm_batched(const Tensor& A, const kernels::GemmOperand& opa, const std::vector<int64_t>& a_off,
                  const Tensor& B, const kernels::GemmOperand& opb, const std::vector<int64_t>& b_off, Tensor& C,
                  int64_t ldc, const std::vector<int64_t>& c_off, int64_t M, int64_t N, int64_t K,
                  double alpha, double beta);

// C [M, N] (float32, row stride ldc) = op(A) op(B) + bias [N] on every row, the bias added in
// cuBLASLt's epilogue (no separate pass over C). Returns false, having done nothing, when
// cuBLASLt offers no algorithm for the case; the caller then adds the bias itself.
bool gemm_bias(const Tensor& A, const kernels::GemmOperand& opa, const Tensor& B, const kernels::GemmOperand& opb,
               const Tensor& bias, Tensor& C, int64_t ldc, int64_t M, int64_t N, int64_t K);

}  // namespace coca::cuda
