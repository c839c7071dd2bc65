#pragma once
#include "coca/kernels/args.h"

namespace coca::cpu {

using kernels::GemmOperand;
// Describes the last two dims of t for BLAS without copying; false when neither of its last
// two strides is 1 (the caller then makes it contiguous).
bool gemm_operand(const Tensor& t, GemmOperand& op);

// C[b] = alpha * A[b] @ B[b] + beta * C[b] for b in [0, batch), where element offsets of each
// batch entry are given by the *_batch_offsets (in elements). M, N, K as usual.
// C must be row-major with ldc. Parallel over the batch when the matrices are small.
void gemm_batched(const Tensor& A, const GemmOperand& opa, const std::vector<int64_t>& a_off,
                  const Tensor& B, const GemmOperand& opb, const std::vector<int64_t>& b_off, Tensor& C,
                  int64_t ldc, const std::vector<int64_t>& c_off, int64_t M, int64_t N, int64_t K,
                  double alpha, double beta);

// Raw single GEMMs on pointers (row-major), used by other kernels.
void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
void dgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
           const double* B, int64_t ldb, double beta, double* C, int64_t ldc);
template <typename T>
inline void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
                 int64_t ldb, T beta, T* C, int64_t ldc) {
  if constexpr (std::is_same_v<T, float>) sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  else dgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace coca::cpu
