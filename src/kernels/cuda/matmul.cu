// Matrix products through cuBLAS. Row-major C = op(A) op(B) is computed as the column-major
// C^T = op(B)^T op(A)^T, so operands go to cuBLAS swapped and nothing is transposed in memory.
#include "coca/kernels/cuda/matmul.h"

#include <optional>

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
int64_t operand_span(const kernels::GemmOperand& op, const std::vector<int64_t>& offs, int64_t rows, int64_t cols) {
  int64_t max_off = 0;
  for (int64_t o : offs) max_off = std::max(max_off, o);
  const int64_t outer = op.trans ? cols : rows, inner = op.trans ? rows : cols;
  return max_off + (outer - 1) * op.ld + inner;
}

__global__ void to_bf16_kernel(const float* x, __nv_bfloat16* y, int64_t n) {
  COCA_KERNEL_LOOP(i, n) y[i] = __float2bfloat16(x[i]);
}

// Four elements per thread: one 16-byte load, one 8-byte store (x 16-byte, y 8-byte aligned).
__global__ void to_bf16_vec4_kernel(const float4* x, __nv_bfloat162* y, int64_t n4) {
  COCA_KERNEL_LOOP(i, n4) {
    const float4 v = x[i];
    y[2 * i] = __floats2bfloat162_rn(v.x, v.y);
    y[2 * i + 1] = __floats2bfloat162_rn(v.z, v.w);
  }
}

// y[0, n) = bf16(x[0, n)) on the library stream, vectorised where the addresses allow.
void cast_to_bf16(const float* x, __nv_bfloat16* y, int64_t n) {
  if (n <= 0) return;
  const bool aligned = reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(y) % 8 == 0;
  const int64_t n4 = aligned ? n / 4 : 0;
  if (n4 > 0) {
    launch<to_bf16_vec4_kernel>(grid_for(n4), 256, 0, stream(), reinterpret_cast<const float4*>(x),
                                                            reinterpret_cast<__nv_bfloat162*>(y), n4);
    COCA_CUDA_LAUNCH_CHECK();
  }
  const int64_t rest = n - 4 * n4;
  if (rest > 0) {
    launch<to_bf16_kernel>(grid_for(rest), 256, 0, stream(), x + 4 * n4, y + 4 * n4, rest);
    COCA_CUDA_LAUNCH_CHECK();
  }
}

}  // namespace

void gemm_batched(const Tensor& A, const kernels::GemmOperand& opa, const std::vector<int64_t>& a_off, const Tensor& B,
                  const kernels::GemmOperand& opb, const std::vector<int64_t>& b_off, Tensor& C, int64_t ldc,
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
    KernelTimer gemm_timer("gemm_f64");
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
    std::optional<KernelTimer> cast_timer(std::in_place, "gemm_bf16_cast");
    cast_to_bf16(dptr<float>(A), abf.as<__nv_bfloat16>(), na);
    cast_to_bf16(dptr<float>(B), bbf.as<__nv_bfloat16>(), nb);
    cast_timer.reset();
    KernelTimer gemm_timer("gemm_bf16");
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
  KernelTimer gemm_timer(prec == MatmulPrecision::Tf32 ? "gemm_tf32" : "gemm_f32");
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

namespace {

// Largest power of two (up to 256) dividing the address: what cuBLASLt may assume.
uint32_t alignment(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  return static_cast<uint32_t>(std::min<uintptr_t>(a & (~a + 1), 256));
}

struct LtDescs {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  ~LtDescs() {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

}  // namespace

bool gemm_bias(const Tensor& A, const kernels::GemmOperand& opa, const Tensor& B, const kernels::GemmOperand& opb,
               const Tensor& bias, Tensor& C, int64_t ldc, int64_t M, int64_t N, int64_t K) {
  if (C.dtype() != DType::f32 || A.dtype() != DType::f32 || B.dtype() != DType::f32 || bias.dtype() != DType::f32 ||
      !bias.is_contiguous() || M == 0 || N == 0 || K == 0)
    return false;
  const MatmulPrecision prec = matmul_precision();
  const bool bf = prec == MatmulPrecision::Bf16;
  const cudaDataType_t ab_type = bf ? CUDA_R_16BF : CUDA_R_32F;
  const cublasComputeType_t compute = bf ? CUBLAS_COMPUTE_32F
                                      : prec == MatmulPrecision::Tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                                      : CUBLAS_COMPUTE_32F_PEDANTIC;
  // Operand copies in bf16 for mixed precision (as gemm_batched makes them).
  const int64_t na = operand_span(opa, {0}, M, K), nb = operand_span(opb, {0}, K, N);
  Scratch abf(bf ? sizeof(__nv_bfloat16) * na : 0), bbf(bf ? sizeof(__nv_bfloat16) * nb : 0);
  const void* a_ptr = A.raw_data();
  const void* b_ptr = B.raw_data();
  if (bf) {
    KernelTimer cast_timer("gemm_bf16_cast");
    cast_to_bf16(dptr<float>(A), abf.as<__nv_bfloat16>(), na);
    cast_to_bf16(dptr<float>(B), bbf.as<__nv_bfloat16>(), nb);
    a_ptr = abf.as<void>();
    b_ptr = bbf.as<void>();
  }
  // Column-major view (see gemm_batched): D^T [N, M] = op(B)^T [N, K] op(A)^T [K, M] + bias.
  const cublasOperation_t ta = opb.trans ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t tb = opa.trans ? CUBLAS_OP_T : CUBLAS_OP_N;
  LtDescs d;
  COCA_CUBLAS_CHECK(cublasLtMatmulDescCreate(&d.op, compute, CUDA_R_32F));
  COCA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  COCA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
  COCA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
  const void* bias_ptr = bias.raw_data();
  COCA_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_ptr, sizeof(bias_ptr)));
  const cudaDataType_t bias_type = CUDA_R_32F;
  COCA_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof(bias_type)));
  // cuBLAS's A is our B: [N, K] after its op; stored (rows, cols) column-major with leading dim opb.ld.
  COCA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d.a, ab_type, ta == CUBLAS_OP_N ? N : K, ta == CUBLAS_OP_N ? K : N,
                                               opb.ld));
  COCA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d.b, ab_type, tb == CUBLAS_OP_N ? K : M, tb == CUBLAS_OP_N ? M : K,
                                               opa.ld));
  COCA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d.c, CUDA_R_32F, N, M, ldc));
  constexpr size_t kWorkspace = 32u << 20;
  Scratch workspace(kWorkspace);
  COCA_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&d.pref));
  COCA_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                         &kWorkspace, sizeof(kWorkspace)));
  const uint32_t al_a = alignment(b_ptr), al_b = alignment(a_ptr), al_c = alignment(C.raw_data());
  COCA_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a,
                                                         sizeof(al_a)));
  COCA_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b,
                                                         sizeof(al_b)));
  COCA_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c,
                                                         sizeof(al_c)));
  COCA_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c,
                                                         sizeof(al_c)));
  cublasLtMatmulHeuristicResult_t heuristic{};
  int found = 0;
  const cublasStatus_t hs =
      cublasLtMatmulAlgoGetHeuristic(cublas_lt(), d.op, d.a, d.b, d.c, d.c, d.pref, 1, &heuristic, &found);
  if (hs != CUBLAS_STATUS_SUCCESS || found == 0) return false;
  KernelTimer gemm_timer(bf ? "gemm_bf16_bias" : "gemm_f32_bias");
  const float one = 1.0f, zero = 0.0f;
  COCA_CUBLAS_CHECK(cublasLtMatmul(cublas_lt(), d.op, &one, b_ptr, d.a, a_ptr, d.b, &zero, C.raw_data(), d.c,
                                   C.raw_data(), d.c, &heuristic.algo, workspace.as<void>(), kWorkspace, stream()));
  return true;
}

}  // namespace coca::cuda
