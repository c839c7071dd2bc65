// cuBLAS and cuBLASLt test doubles for the emulated build (COCA_CUDA=EMU): the GEMMs the project
// calls, computed on the CPU with float64 accumulation (TF32 compute rounds the inputs to TF32
// first). Every transpose (N, T), leading dimension, strided and pointer-array batch, data and
// compute type and cuBLASLt epilogue the project uses is here; anything else is refused by name
// (CUBLAS_STATUS_NOT_SUPPORTED with a line on stderr), as is a leading dimension cuBLAS would
// reject. Every operand's extent is checked against its device allocation and ordered on the
// handle's stream like any other work (emu_state.h).
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>

#include <cblas.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "emu_state.h"

struct cublasContext {
  cudaStream_t stream = nullptr;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
};
struct cublasLtContext {
  int unused = 0;
};

namespace coca::cuda::emu {
namespace {

struct Operand {
  const void* p;
  cudaDataType_t type;
  int64_t ld;
};

size_t elem_bytes(cudaDataType_t t) {
  return t == CUDA_R_64F ? 8 : t == CUDA_R_32F ? 4 : 2;
}
const char* type_name(cudaDataType_t t) {
  switch (t) {
    case CUDA_R_32F: return "CUDA_R_32F";
    case CUDA_R_64F: return "CUDA_R_64F";
    case CUDA_R_16BF: return "CUDA_R_16BF";
    case CUDA_R_16F: return "CUDA_R_16F";
    default: return "another cudaDataType";
  }
}
const char* compute_name(cublasComputeType_t c) {
  switch (c) {
    case CUBLAS_COMPUTE_32F: return "CUBLAS_COMPUTE_32F";
    case CUBLAS_COMPUTE_32F_PEDANTIC: return "CUBLAS_COMPUTE_32F_PEDANTIC";
    case CUBLAS_COMPUTE_32F_FAST_TF32: return "CUBLAS_COMPUTE_32F_FAST_TF32";
    case CUBLAS_COMPUTE_64F: return "CUBLAS_COMPUTE_64F";
    default: return "another cublasComputeType";
  }
}

cublasStatus_t refuse(const std::string& why) {
  std::fprintf(stderr, "[cuda-emu] cuBLAS double: %s\n", why.c_str());
  return CUBLAS_STATUS_NOT_SUPPORTED;
}
cublasStatus_t invalid(const std::string& why) {
  std::fprintf(stderr, "[cuda-emu] cuBLAS double: %s (CUBLAS_STATUS_INVALID_VALUE)\n", why.c_str());
  return CUBLAS_STATUS_INVALID_VALUE;
}

float tf32(float x) {
  uint32_t b;
  std::memcpy(&b, &x, 4);
  if ((b & 0x7f800000u) != 0x7f800000u) b = (b + 0x1000u) & ~0x1fffu;  // round to 10 mantissa bits
  std::memcpy(&x, &b, 4);
  return x;
}

double load(const void* p, cudaDataType_t t, int64_t i, bool to_tf32) {
  switch (t) {
    case CUDA_R_64F: return static_cast<const double*>(p)[i];
    case CUDA_R_16BF: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    default: {
      const float v = static_cast<const float*>(p)[i];
      return to_tf32 ? tf32(v) : v;
    }
  }
}
void store(void* p, cudaDataType_t t, int64_t i, double v) {
  switch (t) {
    case CUDA_R_64F: static_cast<double*>(p)[i] = v; break;
    case CUDA_R_16BF: static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16(static_cast<float>(v)); break;
    default: static_cast<float*>(p)[i] = static_cast<float>(v);
  }
}

// The type combinations the project uses (matmul.cu, attention_gemm.cu).
cublasStatus_t check_types(const char* call, cudaDataType_t a, cudaDataType_t b, cudaDataType_t c,
                           cublasComputeType_t compute) {
  const bool ok = (a == CUDA_R_64F && b == CUDA_R_64F && c == CUDA_R_64F && compute == CUBLAS_COMPUTE_64F) ||
                  (a == CUDA_R_32F && b == CUDA_R_32F && c == CUDA_R_32F &&
                   (compute == CUBLAS_COMPUTE_32F || compute == CUBLAS_COMPUTE_32F_PEDANTIC ||
                    compute == CUBLAS_COMPUTE_32F_FAST_TF32)) ||
                  (a == CUDA_R_16BF && b == CUDA_R_16BF && (c == CUDA_R_32F || c == CUDA_R_16BF) &&
                   compute == CUBLAS_COMPUTE_32F);
  if (ok) return CUBLAS_STATUS_SUCCESS;
  return refuse(std::string(call) + ": A " + type_name(a) + ", B " + type_name(b) + ", C " + type_name(c) +
                ", compute " + compute_name(compute) + " is not a combination the emulation computes");
}

// Column-major C[m, n] = alpha op(A)[m, k] op(B)[k, n] + beta C (+ bias[m] per column). Checks
// the shapes as cuBLAS does, then the operands' extents and stream order, then computes.
cublasStatus_t gemm(const std::string& call, cudaStream_t stream, cublasOperation_t ta, cublasOperation_t tb,
                    int64_t m, int64_t n, int64_t k, double alpha, Operand A, Operand B, double beta, Operand C,
                    cublasComputeType_t compute, const float* bias = nullptr,
                    const std::vector<Span>& extra_reads = {}) {
  for (cublasOperation_t t : {ta, tb})
    if (t != CUBLAS_OP_N && t != CUBLAS_OP_T) return refuse(call + ": only CUBLAS_OP_N and CUBLAS_OP_T are emulated");
  if (m < 0 || n < 0 || k < 0) return invalid(call + ": negative m, n or k");
  const int64_t a_rows = ta == CUBLAS_OP_N ? m : k, a_cols = ta == CUBLAS_OP_N ? k : m;
  const int64_t b_rows = tb == CUBLAS_OP_N ? k : n, b_cols = tb == CUBLAS_OP_N ? n : k;
  if (A.ld < std::max<int64_t>(1, a_rows))
    return invalid(call + ": lda " + std::to_string(A.ld) + " < " + std::to_string(a_rows) + " rows of A");
  if (B.ld < std::max<int64_t>(1, b_rows))
    return invalid(call + ": ldb " + std::to_string(B.ld) + " < " + std::to_string(b_rows) + " rows of B");
  if (C.ld < std::max<int64_t>(1, m))
    return invalid(call + ": ldc " + std::to_string(C.ld) + " < " + std::to_string(m) + " rows of C");
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  auto span = [](const Operand& o, int64_t rows, int64_t cols) {
    return Span{o.p, static_cast<size_t>((cols - 1) * o.ld + rows) * elem_bytes(o.type)};
  };
  std::vector<Span> reads = extra_reads;
  if (k > 0) {
    reads.push_back(span(A, a_rows, a_cols));
    reads.push_back(span(B, b_rows, b_cols));
  }
  if (beta != 0) reads.push_back(span(C, m, n));
  enqueue(stream, call, reads, {span(C, m, n)});
  const bool round = compute == CUBLAS_COMPUTE_32F_FAST_TF32;
  // op(A) as [m][k] and op(B) as [n][k], row-major: every dot product runs over contiguous memory.
  std::vector<double> a(static_cast<size_t>(m * k)), b(static_cast<size_t>(n * k));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t p = 0; p < k; ++p)
      a[i * k + p] = load(A.p, A.type, ta == CUBLAS_OP_N ? i + p * A.ld : p + i * A.ld, round);
  for (int64_t j = 0; j < n; ++j)
    for (int64_t p = 0; p < k; ++p)
      b[j * k + p] = load(B.p, B.type, tb == CUBLAS_OP_N ? p + j * B.ld : j + p * B.ld, round);
  // acc[j][i] = op(B)[j] . op(A)[i], in float64 (OpenBLAS: the emulated model tests spend
  // most of their GEMM time here).
  std::vector<double> acc(static_cast<size_t>(m * n), 0.0);
  if (k > 0)
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(n), static_cast<blasint>(m),
                static_cast<blasint>(k), 1.0, b.data(), static_cast<blasint>(k), a.data(), static_cast<blasint>(k), 0.0,
                acc.data(), static_cast<blasint>(m));
  for (int64_t j = 0; j < n; ++j)
    for (int64_t i = 0; i < m; ++i) {
      double v = alpha * acc[j * m + i];
      if (beta != 0) v += beta * load(C.p, C.type, i + j * C.ld, false);  // beta == 0: C is not read
      if (bias) v += bias[i];
      store(const_cast<void*>(C.p), C.type, i + j * C.ld, v);
    }
  return CUBLAS_STATUS_SUCCESS;
}

double scalar(const void* p, cublasComputeType_t c) {
  return c == CUBLAS_COMPUTE_64F ? *static_cast<const double*>(p) : *static_cast<const float*>(p);
}

// ---- cuBLASLt descriptors --------------------------------------------------------------------
struct LtDesc {
  cublasComputeType_t compute;
  cudaDataType_t scale;
  cublasOperation_t ta = CUBLAS_OP_N, tb = CUBLAS_OP_N;
  cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  const void* bias = nullptr;
  cudaDataType_t bias_type = CUDA_R_32F;
};
struct LtLayout {
  cudaDataType_t type;
  uint64_t rows, cols;
  int64_t ld;
};

}  // namespace
}  // namespace coca::cuda::emu

using namespace coca::cuda::emu;

// ---- cuBLAS ------------------------------------------------------------------------------------
cublasStatus_t cublasCreate_v2(cublasHandle_t* h) {
  *h = new cublasContext();
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy_v2(cublasHandle_t h) {
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream_v2(cublasHandle_t h, cudaStream_t s) {
  h->stream = s;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t mode) {
  h->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGetVersion_v2(cublasHandle_t, int* version) {
  *version = CUBLAS_VERSION;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDgemm_v2(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                              const double* alpha, const double* A, int lda, const double* B, int ldb,
                              const double* beta, double* C, int ldc) {
  return gemm("cublasDgemm", h->stream, ta, tb, m, n, k, *alpha, {A, CUDA_R_64F, lda}, {B, CUDA_R_64F, ldb}, *beta,
              {C, CUDA_R_64F, ldc}, CUBLAS_COMPUTE_64F);
}

cublasStatus_t cublasDgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                         int k, const double* alpha, const double* A, int lda, long long sa,
                                         const double* B, int ldb, long long sb, const double* beta, double* C,
                                         int ldc, long long sc, int batch) {
  for (int i = 0; i < batch; ++i) {
    const cublasStatus_t st = gemm("cublasDgemmStridedBatched[" + std::to_string(i) + "]", h->stream, ta, tb, m, n, k,
                                   *alpha, {A + i * sa, CUDA_R_64F, lda}, {B + i * sb, CUDA_R_64F, ldb}, *beta,
                                   {C + i * sc, CUDA_R_64F, ldc}, CUBLAS_COMPUTE_64F);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
  }
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void* alpha, const void* A, cudaDataType_t at, int lda, const void* B,
                            cudaDataType_t bt, int ldb, const void* beta, void* C, cudaDataType_t ct, int ldc,
                            cublasComputeType_t compute, cublasGemmAlgo_t) {
  if (cublasStatus_t st = check_types("cublasGemmEx", at, bt, ct, compute); st != CUBLAS_STATUS_SUCCESS) return st;
  return gemm("cublasGemmEx", h->stream, ta, tb, m, n, k, scalar(alpha, compute), {A, at, lda}, {B, bt, ldb},
              scalar(beta, compute), {C, ct, ldc}, compute);
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void* alpha, const void* A, cudaDataType_t at, int lda,
                                          long long sa, const void* B, cudaDataType_t bt, int ldb, long long sb,
                                          const void* beta, void* C, cudaDataType_t ct, int ldc, long long sc,
                                          int batch, cublasComputeType_t compute, cublasGemmAlgo_t) {
  if (cublasStatus_t st = check_types("cublasGemmStridedBatchedEx", at, bt, ct, compute); st != CUBLAS_STATUS_SUCCESS)
    return st;
  const auto* a = static_cast<const char*>(A);
  const auto* b = static_cast<const char*>(B);
  auto* c = static_cast<char*>(C);
  for (int i = 0; i < batch; ++i) {
    const cublasStatus_t st =
        gemm("cublasGemmStridedBatchedEx[" + std::to_string(i) + "]", h->stream, ta, tb, m, n, k,
             scalar(alpha, compute), {a + i * sa * elem_bytes(at), at, lda}, {b + i * sb * elem_bytes(bt), bt, ldb},
             scalar(beta, compute), {c + i * sc * elem_bytes(ct), ct, ldc}, compute);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
  }
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGemmBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                   const void* alpha, const void* const A[], cudaDataType_t at, int lda,
                                   const void* const B[], cudaDataType_t bt, int ldb, const void* beta,
                                   void* const C[], cudaDataType_t ct, int ldc, int batch,
                                   cublasComputeType_t compute, cublasGemmAlgo_t) {
  if (cublasStatus_t st = check_types("cublasGemmBatchedEx", at, bt, ct, compute); st != CUBLAS_STATUS_SUCCESS)
    return st;
  const size_t arr = sizeof(void*) * static_cast<size_t>(batch);
  for (int i = 0; i < batch; ++i) {
    // The pointer arrays are device memory too: read (and ordered) like the operands.
    const std::vector<Span> arrays = {{A, arr}, {B, arr}, {C, arr}};
    const cublasStatus_t st = gemm("cublasGemmBatchedEx[" + std::to_string(i) + "]", h->stream, ta, tb, m, n, k,
                                   scalar(alpha, compute), {A[i], at, lda}, {B[i], bt, ldb}, scalar(beta, compute),
                                   {C[i], ct, ldc}, compute, nullptr, arrays);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
  }
  return CUBLAS_STATUS_SUCCESS;
}

// ---- cuBLASLt ----------------------------------------------------------------------------------
cublasStatus_t cublasLtCreate(cublasLtHandle_t* h) {
  *h = new cublasLtContext();
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) {
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* d, cublasComputeType_t compute, cudaDataType_t scale) {
  *d = reinterpret_cast<cublasLtMatmulDesc_t>(new LtDesc{compute, scale});
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
  delete reinterpret_cast<LtDesc*>(d);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr,
                                              const void* buf, size_t size) {
  LtDesc& x = *reinterpret_cast<LtDesc*>(d);
  switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA: std::memcpy(&x.ta, buf, sizeof x.ta); break;
    case CUBLASLT_MATMUL_DESC_TRANSB: std::memcpy(&x.tb, buf, sizeof x.tb); break;
    case CUBLASLT_MATMUL_DESC_EPILOGUE: std::memcpy(&x.epilogue, buf, sizeof x.epilogue); break;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: std::memcpy(&x.bias, buf, sizeof x.bias); break;
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: std::memcpy(&x.bias_type, buf, sizeof x.bias_type); break;
    default:
      return refuse("cublasLtMatmulDescSetAttribute: attribute " + std::to_string(static_cast<int>(attr)) +
                    " is not emulated (TRANSA, TRANSB, EPILOGUE, BIAS_POINTER, BIAS_DATA_TYPE are)");
  }
  return size ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
}
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* l, cudaDataType type, uint64_t rows, uint64_t cols,
                                          int64_t ld) {
  *l = reinterpret_cast<cublasLtMatrixLayout_t>(new LtLayout{type, rows, cols, ld});
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
  delete reinterpret_cast<LtLayout*>(l);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* p) {
  *p = reinterpret_cast<cublasLtMatmulPreference_t>(new size_t(0));
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
  delete reinterpret_cast<size_t*>(p);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t, cublasLtMatmulPreferenceAttributes_t attr,
                                                    const void*, size_t) {
  switch (attr) {
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES: return CUBLAS_STATUS_SUCCESS;
    default:
      return refuse("cublasLtMatmulPreferenceSetAttribute: attribute " + std::to_string(static_cast<int>(attr)) +
                    " is not emulated");
  }
}
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t,
                                              cublasLtMatrixLayout_t, cublasLtMatrixLayout_t, cublasLtMatrixLayout_t,
                                              cublasLtMatmulPreference_t, int requested,
                                              cublasLtMatmulHeuristicResult_t* results, int* found) {
  const LtDesc& x = *reinterpret_cast<LtDesc*>(d);
  if (x.epilogue != CUBLASLT_EPILOGUE_DEFAULT && x.epilogue != CUBLASLT_EPILOGUE_BIAS)
    return refuse("cublasLtMatmulAlgoGetHeuristic: epilogue " + std::to_string(static_cast<int>(x.epilogue)) +
                  " is not emulated (DEFAULT and BIAS are)");
  *found = 0;
  if (requested < 1) return CUBLAS_STATUS_INVALID_VALUE;
  std::memset(&results[0], 0, sizeof(results[0]));
  results[0].state = CUBLAS_STATUS_SUCCESS;
  results[0].wavesCount = 1.0f;
  *found = 1;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t d, const void* alpha, const void* A,
                              cublasLtMatrixLayout_t la, const void* B, cublasLtMatrixLayout_t lb, const void* beta,
                              const void* C, cublasLtMatrixLayout_t lc, void* D, cublasLtMatrixLayout_t ld,
                              const cublasLtMatmulAlgo_t*, void*, size_t, cudaStream_t stream) {
  const LtDesc& x = *reinterpret_cast<LtDesc*>(d);
  const LtLayout& a = *reinterpret_cast<LtLayout*>(la);
  const LtLayout& b = *reinterpret_cast<LtLayout*>(lb);
  const LtLayout& c = *reinterpret_cast<LtLayout*>(lc);
  const LtLayout& dl = *reinterpret_cast<LtLayout*>(ld);
  if (cublasStatus_t st = check_types("cublasLtMatmul", a.type, b.type, dl.type, x.compute); st != CUBLAS_STATUS_SUCCESS)
    return st;
  if (x.epilogue != CUBLASLT_EPILOGUE_DEFAULT && x.epilogue != CUBLASLT_EPILOGUE_BIAS)
    return refuse("cublasLtMatmul: epilogue " + std::to_string(static_cast<int>(x.epilogue)) + " is not emulated");
  if (x.epilogue == CUBLASLT_EPILOGUE_BIAS && (x.bias_type != CUDA_R_32F || !x.bias))
    return refuse("cublasLtMatmul: the BIAS epilogue is emulated with a float32 bias pointer only");
  if (C != D || c.rows != dl.rows || c.cols != dl.cols || c.ld != dl.ld || c.type != dl.type)
    return refuse("cublasLtMatmul: C and D must be the same matrix (out-of-place is not emulated)");
  const int64_t m = static_cast<int64_t>(dl.rows), n = static_cast<int64_t>(dl.cols);
  const int64_t k = static_cast<int64_t>(x.ta == CUBLAS_OP_N ? a.cols : a.rows);
  const int64_t am = static_cast<int64_t>(x.ta == CUBLAS_OP_N ? a.rows : a.cols);
  const int64_t bk = static_cast<int64_t>(x.tb == CUBLAS_OP_N ? b.rows : b.cols);
  const int64_t bn = static_cast<int64_t>(x.tb == CUBLAS_OP_N ? b.cols : b.rows);
  if (am != m || bk != k || bn != n)
    return invalid("cublasLtMatmul: layouts disagree: op(A) " + std::to_string(am) + "x" + std::to_string(k) +
                   ", op(B) " + std::to_string(bk) + "x" + std::to_string(bn) + ", D " + std::to_string(m) + "x" +
                   std::to_string(n));
  const float* bias = x.epilogue == CUBLASLT_EPILOGUE_BIAS ? static_cast<const float*>(x.bias) : nullptr;
  std::vector<Span> extra;
  if (bias) extra.push_back(Span{bias, sizeof(float) * static_cast<size_t>(m)});
  return gemm("cublasLtMatmul", stream, x.ta, x.tb, m, n, k, scalar(alpha, x.compute), {A, a.type, a.ld},
              {B, b.type, b.ld}, scalar(beta, x.compute), {D, dl.type, dl.ld}, x.compute, bias, extra);
}
