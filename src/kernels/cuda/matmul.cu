// Matrix products through cuBLAS. Row-major C = op(A) op(B) is computed as the column-major
// C^T = op(B)^T op(A)^T, so operands go to cuBLAS swapped and nothing is transposed in memory.
#include "coca/kernels/cuda/matmul.h"

#include "common.cuh"

namespace coca::cuda {

namespace {

// The common offset step when offs is an arithmetic progression (broadcast batches give 0).
bool uniform_step(const std::vector<int64_t>& offs, int64_t& step) {
  step = offs.size() > 1 ? offs[1] - offs[0] : 0;
  for (size_t i = 1; i < offs.size(); ++i)
    if (offs[i] - offs[i - 1] != step) return false;
  return true;
}

// Elements an operand can touch from its base pointer: the largest batch offset plus the span
// of one [rows, cols] matrix with leading dimension ld.
int64_t operand_span(const cpu::GemmOperand& op, const std::vector<int64_t>& offs, int64_t rows, int64_t cols) {
  int64_t max_off = 0;
  for (int64_t o : offs) max_off = std::max(max_off, o);
  const int64_t outer = op.trans ? cols : rows, inner = op.trans ? rows : cols;
  return max_off + (outer - 1) * op.ld + inner;
}

__global__ void to_bf16_kernel(const float* x, __nv_bfloat16* y, int64_t n) {
  COCA_KERNEL_LOOP(i, n) y[i] = __float2bfloat16(x[i]);
}

}  // namespace

void gemm_batched(const Tensor& A, const cpu::GemmOperand& opa, const std::vector<int64_t>& a_off, const Tensor& B,
                  const cpu::GemmOperand& opb, const std::vector<int64_t>& b_off, Tensor& C, int64_t ldc,
                  const std::vector<int64_t>& c_off, int64_t M, int64_t N, int64_t K, double alpha, double beta) {
  const int64_t batch = static_cast<int64_t>(c_off.size());
  if (batch == 0 || M == 0 || N == 0) return;
  const cublasOperation_t ta = opb.trans ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLAS's first operand is our B
  const cublasOperation_t tb = opa.trans ? CUBLAS_OP_T : CUBLAS_OP_N;
  int64_t sa = 0, sb = 0, sc = 0;
  const bool strided = uniform_step(a_off, sa) && uniform_step(b_off, sb) && uniform_step(c_off, sc);
  cublasHandle_t h = cublas();
  const DType dt = C.dtype();
  COCA_CHECK(dt == DType::f32 || dt == DType::f64, "matmul (CUDA): dtype ", dtype_name(dt), " is not supported");
  if (dt == DType::f64) {
    const double al = alpha, be = beta;
    const double* a = dptr<double>(A);
    const double* b = dptr<double>(B);
    double* c = dptr<double>(C);
    if (strided) {
      COCA_CUBLAS_CHECK(cublasDgemmStridedBatched(h, ta, tb, N, M, K, &al, b + b_off[0], opb.ld, sb, a + a_off[0],
                                                  opa.ld, sa, &be, c + c_off[0], ldc, sc, batch));
    } else {
      for (int64_t i = 0; i < batch; ++i)
        COCA_CUBLAS_CHECK(cublasDgemm(h, ta, tb, N, M, K, &al, b + b_off[i], opb.ld, a + a_off[i], opa.ld, &be,
                                      c + c_off[i], ldc));
    }
    return;
  }
  const float al = static_cast<float>(alpha), be = static_cast<float>(beta);
  float* c = dptr<float>(C);
  const MatmulPrecision prec = matmul_precision();
  if (prec == MatmulPrecision::Bf16) {
    // Mixed precision: bf16 operands, float32 accumulation and output.
    const int64_t na = operand_span(opa, a_off, M, K), nb = operand_span(opb, b_off, K, N);
    Scratch abf(sizeof(__nv_bfloat16) * na), bbf(sizeof(__nv_bfloat16) * nb);
    to_bf16_kernel<<<grid_for(na), 256, 0, stream()>>>(dptr<float>(A), abf.as<__nv_bfloat16>(), na);
    COCA_CUDA_LAUNCH_CHECK();
    to_bf16_kernel<<<grid_for(nb), 256, 0, stream()>>>(dptr<float>(B), bbf.as<__nv_bfloat16>(), nb);
    COCA_CUDA_LAUNCH_CHECK();
    const __nv_bfloat16* a = abf.as<__nv_bfloat16>();
    const __nv_bfloat16* b = bbf.as<__nv_bfloat16>();
    if (strided) {
      COCA_CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, ta, tb, N, M, K, &al, b + b_off[0], CUDA_R_16BF, opb.ld, sb,
                                                   a + a_off[0], CUDA_R_16BF, opa.ld, sa, &be, c + c_off[0],
                                                   CUDA_R_32F, ldc, sc, batch, CUBLAS_COMPUTE_32F,
                                                   CUBLAS_GEMM_DEFAULT));
    } else {
      for (int64_t i = 0; i < batch; ++i)
        COCA_CUBLAS_CHECK(cublasGemmEx(h, ta, tb, N, M, K, &al, b + b_off[i], CUDA_R_16BF, opb.ld, a + a_off[i],
                                       CUDA_R_16BF, opa.ld, &be, c + c_off[i], CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F,
                                       CUBLAS_GEMM_DEFAULT));
    }
    return;
  }
  const float* a = dptr<float>(A);
  const float* b = dptr<float>(B);
  const cublasComputeType_t compute =
      prec == MatmulPrecision::Tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F_PEDANTIC;
  if (strided) {
    COCA_CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, ta, tb, N, M, K, &al, b + b_off[0], CUDA_R_32F, opb.ld, sb,
                                                 a + a_off[0], CUDA_R_32F, opa.ld, sa, &be, c + c_off[0], CUDA_R_32F,
                                                 ldc, sc, batch, compute, CUBLAS_GEMM_DEFAULT));
  } else {
    for (int64_t i = 0; i < batch; ++i)
      COCA_CUBLAS_CHECK(cublasGemmEx(h, ta, tb, N, M, K, &al, b + b_off[i], CUDA_R_32F, opb.ld, a + a_off[i],
                                     CUDA_R_32F, opa.ld, &be, c + c_off[i], CUDA_R_32F, ldc, compute,
                                     CUBLAS_GEMM_DEFAULT));
  }
}

}  // namespace coca::cuda
