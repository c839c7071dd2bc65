#include "coca/kernels/cpu/matmul.h"

#include <cblas.h>
#include <omp.h>

#include "coca/kernels/cpu/profile.h"
#include "coca/tensor/dispatch.h"

namespace coca::cpu {

bool gemm_operand(const Tensor& t, GemmOperand& op) {
  const int64_t rows = t.size(-2), cols = t.size(-1);
  const int64_t s_row = t.stride(-2), s_col = t.stride(-1);
  if (s_col == 1 || cols == 1) {
    op.trans = false;
    op.ld = std::max<int64_t>(rows == 1 ? cols : s_row, std::max<int64_t>(cols, 1));
    if (rows > 1 && s_row < cols) return false;
    return true;
  }
  if (s_row == 1 || rows == 1) {
    op.trans = true;
    op.ld = std::max<int64_t>(cols == 1 ? rows : s_col, std::max<int64_t>(rows, 1));
    if (cols > 1 && s_col < rows) return false;
    return true;
  }
  return false;
}

void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  ProfileScope prof("gemm sgemm");
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B,
              ldb, beta, C, ldc);
}

void dgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
           const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  ProfileScope prof("gemm dgemm");
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B,
              ldb, beta, C, ldc);
}

void gemm_batched(const Tensor& A, const GemmOperand& opa, const std::vector<int64_t>& a_off, const Tensor& B,
                  const GemmOperand& opb, const std::vector<int64_t>& b_off, Tensor& C, int64_t ldc,
                  const std::vector<int64_t>& c_off, int64_t M, int64_t N, int64_t K, double alpha, double beta) {
  const int64_t batch = static_cast<int64_t>(c_off.size());
  dispatch_float(C.dtype(), "matmul", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* a = A.data<T>();
    const T* b = B.data<T>();
    T* c = C.data<T>();
    auto one = [&](int64_t i) {
      gemm<T>(opa.trans, opb.trans, M, N, K, static_cast<T>(alpha), a + a_off[i], opa.ld, b + b_off[i], opb.ld,
              static_cast<T>(beta), c + c_off[i], ldc);
    };
    if (batch == 1) {  // the common case: straight to BLAS, which threads it
      one(0);
      return;
    }
    // Many or small matrices: one single-threaded BLAS call per thread (the OpenMP OpenBLAS
    // runs serially inside a parallel region). A few large ones: let BLAS use every core.
    const int threads = omp_get_max_threads();
    const bool per_thread = threads > 1 && (M * N * K <= (1 << 21) || batch >= 2 * threads);
#pragma omp parallel for schedule(dynamic) if (per_thread)
    for (int64_t i = 0; i < batch; ++i) one(i);
  });
}

}  // namespace coca::cpu
