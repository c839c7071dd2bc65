// Attention for short key lengths on the tensor cores: cuBLAS batched GEMMs for Q K^T and P V
// (and the five products of the backward), with one-warp-per-row kernels of our own for the
// masks and the softmax (forward) or the softmax gradient (backward). The scores of every head
// live in a [B*H, T, Sp] scratch (Sp: S rounded up to a multiple of 8, so that every scratch row
// starts 16-byte aligned for the tensor-core kernels; columns S..Sp-1 are never read or written).
//
// Layout. q/k/v/o (and dout/dq/dk/dv) are [B, H, rows, D] with a unit last-dim stride and any
// strides for b, h and the row: per head (b, h) each is a row-major [rows, D] matrix with
// leading dimension stride(2). The heads are in general not one uniform stride apart (a packed
// qkv view has stride(0) = T*3*H*D, stride(1) = D), so a GEMM whose operands are not all
// uniform takes device arrays of B*H pointers, filled on the device by fill_ptrs_kernel (no
// host copy, no sync); where every operand is uniform (our scratch, contiguous tensors) it runs
// as a strided batched GEMM.
//
// cuBLAS is column-major: a row-major [r, c] matrix with leading dimension ld is, to cuBLAS, the
// column-major [c, r] matrix (its transpose) with the same ld. Row-major C = A B is therefore
// computed as column-major C^T = B^T A^T: cuBLAS's first operand is our right-hand factor
// (matmul.cu does the same). Every call states its mapping as
// cublas(transa, transb, m, n, k, A/lda, B/ldb, C/ldc).
//
// Precision. f64: CUDA_R_64F operands and CUBLAS_COMPUTE_64F; scratch and softmax in double.
// f32: matmul_precision() Float32 -> CUBLAS_COMPUTE_32F_PEDANTIC, Tf32 ->
// CUBLAS_COMPUTE_32F_FAST_TF32; scratch and softmax in float. Bf16: q, k, v (and dout) are cast
// to contiguous bf16 copies, P and dS are written in bf16, and every GEMM takes CUDA_R_16BF
// inputs with CUBLAS_COMPUTE_32F and float32 outputs; the score and softmax math stays float.
//
// Fully masked rows (every key -inf) follow the CPU and tiled kernels: the P row is 0, so the
// output row is 0 and lse = -inf; the backward then sets P = dS = 0 for the row (dq row 0, no
// contribution to dk or dv).
#include "attention_gemm.h"

#include <climits>
#include <type_traits>

#include "attention_mask.cuh"
#include "common.cuh"

namespace coca::cuda::detail {

namespace {

constexpr int kRowsPerBlock = 8;  // warps per block of the row kernels; each warp owns one row

// Row pitch of the score scratch: S rounded up to a multiple of 8 elements.
int64_t score_pitch(int64_t S) { return (S + 7) / 8 * 8; }

// Forward softmax of row r = (b*H + h)*T + i: sc[r*pitch + j] (scaled scores, j < S) -> P in
// p[r*pitch + j] and lse[r]. NPL = values per lane = ceil(S / 32). p may alias sc (same type):
// a lane reads all of its elements into registers before it writes any, and only its own.
template <typename T, typename PT, int NPL>
__global__ void __launch_bounds__(32 * kRowsPerBlock)
    softmax_fwd_kernel(MaskParams<T> mp, const T* sc, PT* p, int64_t pitch, T* lse, int64_t rows) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(kRowsPerBlock) + threadIdx.y;
  if (r >= rows) return;  // uniform across the warp
  const int lane = threadIdx.x;
  const int64_t S = mp.S, i = r % mp.Tq, bh = r / mp.Tq, h = bh % mp.H, b = bh / mp.H;
  const T* srow = sc + r * pitch;
  PT* prow = p + r * pitch;
  T x[NPL];
  T m = neg_inf<T>();
#pragma unroll
  for (int c = 0; c < NPL; ++c) {
    const int64_t j = lane + 32 * c;
    x[c] = j < S ? masked(mp, b, h, i, j, srow[j]) : neg_inf<T>();
    m = max(m, x[c]);
  }
  m = warp_max(m);
  if (m == neg_inf<T>()) {  // every key masked: a zero row and lse = -inf, as the CPU kernel
#pragma unroll
    for (int c = 0; c < NPL; ++c) {
      const int64_t j = lane + 32 * c;
      if (j < S) prow[j] = st<PT>(T(0));
    }
    if (lane == 0) lse[r] = neg_inf<T>();
    return;
  }
  T sum = 0;
#pragma unroll
  for (int c = 0; c < NPL; ++c) {
    x[c] = exp(x[c] - m);  // 0 for masked keys and for lanes past S (-inf)
    sum += x[c];
  }
  sum = warp_sum(sum);
  const T inv = T(1) / sum;
#pragma unroll
  for (int c = 0; c < NPL; ++c) {
    const int64_t j = lane + 32 * c;
    if (j < S) prow[j] = st<PT>(x[c] * inv);
  }
  if (lane == 0) lse[r] = m + log(sum);
}

// Backward of row r = (b*H + h)*T + i: delta = dO_i . O_i; then for every key j
// P = exp(masked score - lse) and dS = P * (dP - delta), both 0 in a fully masked row
// (lse = -inf). x holds the scaled scores, y holds dP = dO V^T (row pitch `pitch`). p and ds
// may alias x and y (same type): each element is read, then written, by the same lane.
template <typename T, typename PT>
__global__ void __launch_bounds__(32 * kRowsPerBlock)
    softmax_bwd_kernel(MaskParams<T> mp, const T* x, const T* y, int64_t pitch, const T* lse, const T* o,
                       int64_t os0, int64_t os1, int64_t os2, const T* g, int64_t gs0, int64_t gs1, int64_t gs2,
                       int64_t D, PT* p, PT* ds, int64_t rows) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(kRowsPerBlock) + threadIdx.y;
  if (r >= rows) return;  // uniform across the warp
  const int lane = threadIdx.x;
  const int64_t S = mp.S, i = r % mp.Tq, bh = r / mp.Tq, h = bh % mp.H, b = bh / mp.H;
  const T* orow = o + b * os0 + h * os1 + i * os2;
  const T* grow = g + b * gs0 + h * gs1 + i * gs2;
  T acc = 0;
  for (int64_t d = lane; d < D; d += 32) acc += orow[d] * grow[d];
  const T delta = warp_sum(acc);
  const T l = lse[r];
  const bool live = l != neg_inf<T>();
  const T* xrow = x + r * pitch;
  const T* yrow = y + r * pitch;
  PT* prow = p + r * pitch;
  PT* dsrow = ds + r * pitch;
  for (int64_t j = lane; j < S; j += 32) {
    T pj = 0, dsj = 0;
    if (live) {
      pj = exp(masked(mp, b, h, i, j, xrow[j]) - l);
      dsj = pj * (yrow[j] - delta);
    }
    prow[j] = st<PT>(pj);
    dsrow[j] = st<PT>(dsj);
  }
}

// dst [B*H*R*D] contiguous bf16 = src [B, H, R, D] with element strides (s0, s1, s2, 1).
__global__ void cast_bf16_kernel(const float* src, int64_t s0, int64_t s1, int64_t s2, int64_t H, int64_t R,
                                 int64_t D, __nv_bfloat16* dst, int64_t n) {
  COCA_KERNEL_LOOP(e, n) {
    const int64_t d = e % D, rest = e / D, r = rest % R, bh = rest / R, h = bh % H, b = bh / H;
    dst[e] = __float2bfloat16(src[b * s0 + h * s1 + r * s2 + d]);
  }
}

// Base address and byte strides over b and h of one GEMM operand.
struct PtrSrc {
  const char* base;
  int64_t s0, s1;
};

// out[0 .. BH) = A's head pointers, out[BH .. 2BH) = B's, out[2BH .. 3BH) = C's; head bh = b*H + h.
__global__ void fill_ptrs_kernel(PtrSrc a, PtrSrc b, PtrSrc c, int64_t H, int64_t BH, void** out) {
  COCA_KERNEL_LOOP(i, BH) {
    const int64_t bi = i / H, hi = i % H;
    out[i] = const_cast<char*>(a.base + bi * a.s0 + hi * a.s1);
    out[BH + i] = const_cast<char*>(b.base + bi * b.s0 + hi * b.s1);
    out[2 * BH + i] = const_cast<char*>(c.base + bi * c.s0 + hi * c.s1);
  }
}

// One operand of a batched GEMM: head (b, h) is the matrix at element offset b*s0 + h*s1 from
// base, leading dimension ld (a row-major [rows, cols] matrix's row stride).
struct Operand {
  const void* base;
  int64_t s0, s1, ld;
  cudaDataType_t type;
};

int64_t type_size(cudaDataType_t t) { return t == CUDA_R_64F ? 8 : t == CUDA_R_16BF ? 2 : 4; }

// Row stride as a leading dimension. A single row is never stepped over, so its stride (which
// may be anything) is replaced by D: cuBLAS rejects ld < D, and ld = D keeps one head's
// [1, D] matrix within a uniform batch stride as small as D.
int64_t row_ld(const Tensor& t, int64_t rows, int64_t D) { return rows <= 1 ? D : t.stride(2); }

// A [B, H, rows, D] tensor's heads.
Operand head_operand(const Tensor& t, int64_t rows, int64_t D, cudaDataType_t type) {
  return {t.raw_data(), t.stride(0), t.stride(1), row_ld(t, rows, D), type};
}

// Our contiguous [B, H, rows, pitch] scratch.
Operand scratch_operand(const void* p, int64_t H, int64_t rows, int64_t pitch, cudaDataType_t type) {
  return {p, H * rows * pitch, rows * pitch, pitch, type};
}

// Whether head bh = b*H + h sits at offset bh * step for every b < B, h < H.
bool uniform_step(const Operand& x, int64_t B, int64_t H, int64_t& step) {
  if (H == 1) {
    step = x.s0;  // bh == b
    return true;
  }
  step = x.s1;
  return B == 1 || x.s0 == H * x.s1;
}

int as_int(int64_t v, const char* what) {
  COCA_CHECK(v >= 0 && v <= INT_MAX, "scaled_dot_product_attention (CUDA, gemm): ", what, " = ", v,
             " does not fit cuBLAS's int arguments");
  return static_cast<int>(v);
}

struct GemmMode {
  cublasComputeType_t compute;
  bool f64;  // alpha and beta are doubles
};

// Per head (b, h) of the B*H: C = alpha op(A) op(B) with beta = 0 (C fully overwritten, never
// read). Arguments as cuBLAS takes them: column-major, C is m x n, op(A) m x k, op(B) k x n.
void gemm_heads(const GemmMode& mode, cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n, int64_t k,
                double alpha, const Operand& A, const Operand& Bop, const Operand& C, int64_t B, int64_t H) {
  const int64_t BH = B * H;
  const double al64 = alpha, be64 = 0.0;
  const float al32 = static_cast<float>(alpha), be32 = 0.0f;
  const void* al = mode.f64 ? static_cast<const void*>(&al64) : static_cast<const void*>(&al32);
  const void* be = mode.f64 ? static_cast<const void*>(&be64) : static_cast<const void*>(&be32);
  const int im = as_int(m, "m"), in = as_int(n, "n"), ik = as_int(k, "k"), batch = as_int(BH, "B*H");
  const int lda = as_int(A.ld, "lda"), ldb = as_int(Bop.ld, "ldb"), ldc = as_int(C.ld, "ldc");
  int64_t sa = 0, sb = 0, sc = 0;
  const bool sa_ok = uniform_step(A, B, H, sa), sb_ok = uniform_step(Bop, B, H, sb),
             sc_ok = uniform_step(C, B, H, sc);
  if (sa_ok && sb_ok && sc_ok) {
    COCA_CUBLAS_CHECK(cublasGemmStridedBatchedEx(cublas(), ta, tb, im, in, ik, al, A.base, A.type, lda, sa, Bop.base,
                                                 Bop.type, ldb, sb, be, const_cast<void*>(C.base), C.type, ldc, sc,
                                                 batch, mode.compute, CUBLAS_GEMM_DEFAULT));
    return;
  }
  Scratch ptrs(sizeof(void*) * 3 * BH);
  void** arr = ptrs.as<void*>();
  auto src = [](const Operand& x) {
    const int64_t es = type_size(x.type);
    return PtrSrc{static_cast<const char*>(x.base), x.s0 * es, x.s1 * es};
  };
  launch<fill_ptrs_kernel>(grid_for(BH), 256, 0, stream(), src(A), src(Bop), src(C), H, BH, arr);
  COCA_CUDA_LAUNCH_CHECK();
  const void* const* a_arr = arr;
  const void* const* b_arr = arr + BH;
  void* const* c_arr = arr + 2 * BH;
  COCA_CUBLAS_CHECK(cublasGemmBatchedEx(cublas(), ta, tb, im, in, ik, al, a_arr, A.type, lda, b_arr, Bop.type, ldb,
                                        be, c_arr, C.type, ldc, batch, mode.compute, CUBLAS_GEMM_DEFAULT));
}

template <typename T, typename PT>
void launch_softmax_fwd(const MaskParams<T>& mp, const T* sc, PT* p, int64_t pitch, T* lse, int64_t rows) {
  const unsigned grid = blocks_for(rows, kRowsPerBlock);
  const dim3 block(32, kRowsPerBlock);
  auto go = [&](auto npl) {
    constexpr int NPL = decltype(npl)::value;
    launch<softmax_fwd_kernel<T, PT, NPL>>(grid, block, 0, stream(), mp, sc, p, pitch, lse, rows);
    COCA_CUDA_LAUNCH_CHECK();
  };
  const int64_t S = mp.S;
  COCA_CHECK(S >= 1 && S <= kGemmAttentionMaxKeys, "attention (CUDA, gemm): S = ", S, " out of range");
  if (S <= 32) return go(std::integral_constant<int, 1>{});
  if (S <= 64) return go(std::integral_constant<int, 2>{});
  if (S <= 128) return go(std::integral_constant<int, 4>{});
  if (S <= 256) return go(std::integral_constant<int, 8>{});
  return go(std::integral_constant<int, 16>{});
}

// The [B, H, R, D] float tensor t as a contiguous bf16 copy in dst (B*H*R*D elements).
void cast_to_bf16(const Tensor& t, int64_t B, int64_t H, int64_t R, int64_t D, __nv_bfloat16* dst) {
  const int64_t n = B * H * R * D;
  launch<cast_bf16_kernel>(grid_for(n), 256, 0, stream(), dptr<float>(t), t.stride(0), t.stride(1), t.stride(2), H, R, D,
                                                      dst, n);
  COCA_CUDA_LAUNCH_CHECK();
}

template <typename T>
constexpr cudaDataType_t cuda_type() {
  return std::is_same_v<T, double> ? CUDA_R_64F : CUDA_R_32F;
}

// bf16 operands: float32 data under MatmulPrecision::Bf16 (float64 ignores the precision, as matmul does).
template <typename T>
bool use_bf16() {
  return std::is_same_v<T, float> && matmul_precision() == MatmulPrecision::Bf16;
}

template <typename T>
GemmMode gemm_mode(bool bf) {
  if (std::is_same_v<T, double>) return {CUBLAS_COMPUTE_64F, true};
  if (bf) return {CUBLAS_COMPUTE_32F, false};
  return {matmul_precision() == MatmulPrecision::Tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F_PEDANTIC,
          false};
}

template <typename T>
void forward_t(const kernels::AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v, Tensor& o, Tensor& lse) {
  const int64_t B = a.B, H = a.H, Tq = a.T, S = a.S, D = a.D, BH = B * H, rows = BH * Tq;
  const int64_t Sp = score_pitch(S), n = rows * Sp;
  const bool bf = use_bf16<T>();
  const GemmMode mode = gemm_mode<T>(bf);
  const cudaDataType_t tt = cuda_type<T>();
  Scratch sc(sizeof(T) * n);                                  // scores, then P unless bf16
  Scratch pbf(bf ? sizeof(__nv_bfloat16) * n : 0);            // P in bf16
  Scratch qbf(bf ? sizeof(__nv_bfloat16) * BH * Tq * D : 0);  // operand copies in bf16
  Scratch kbf(bf ? sizeof(__nv_bfloat16) * BH * S * D : 0);
  Scratch vbf(bf ? sizeof(__nv_bfloat16) * BH * S * D : 0);
  Operand Q = head_operand(q, Tq, D, tt), K = head_operand(k, S, D, tt), V = head_operand(v, S, D, tt);
  if constexpr (std::is_same_v<T, float>) {
    if (bf) {
      cast_to_bf16(q, B, H, Tq, D, qbf.as<__nv_bfloat16>());
      cast_to_bf16(k, B, H, S, D, kbf.as<__nv_bfloat16>());
      cast_to_bf16(v, B, H, S, D, vbf.as<__nv_bfloat16>());
      Q = scratch_operand(qbf.as<void>(), H, Tq, D, CUDA_R_16BF);
      K = scratch_operand(kbf.as<void>(), H, S, D, CUDA_R_16BF);
      V = scratch_operand(vbf.as<void>(), H, S, D, CUDA_R_16BF);
    }
  }
  const Operand Sc = scratch_operand(sc.as<void>(), H, Tq, Sp, tt);
  // Sc = scale Q K^T, row-major [T, S] = Q [T, D] K^T [D, S]. Column-major: Sc^T [S, T] = K [S, D] Q^T [D, T],
  // where k's rows (K^T [D, S] column-major, ld ks2) go in transposed and q's (Q^T [D, T], ld qs2) as they are:
  // cublas(T, N, m = S, n = T, k = D, A = k / ks2, B = q / qs2, C = Sc / Sp).
  gemm_heads(mode, CUBLAS_OP_T, CUBLAS_OP_N, S, Tq, D, a.scale, K, Q, Sc, B, H);
  const MaskParams<T> mp = mask_params<T>(a);
  Operand P = Sc;  // P written over the scores
  if constexpr (std::is_same_v<T, float>) {
    if (bf) {
      launch_softmax_fwd<T, __nv_bfloat16>(mp, sc.as<T>(), pbf.as<__nv_bfloat16>(), Sp, dptr<T>(lse), rows);
      P = scratch_operand(pbf.as<void>(), H, Tq, Sp, CUDA_R_16BF);
    }
  }
  if (!bf) launch_softmax_fwd<T, T>(mp, sc.as<T>(), sc.as<T>(), Sp, dptr<T>(lse), rows);
  // O = P V, row-major [T, D] = P [T, S] V [S, D]. Column-major: O^T [D, T] = V^T [D, S] P^T [S, T]:
  // cublas(N, N, m = D, n = T, k = S, A = v / vs2, B = P / Sp, C = o / os2).
  gemm_heads(mode, CUBLAS_OP_N, CUBLAS_OP_N, D, Tq, S, 1.0, V, P, head_operand(o, Tq, D, tt), B, H);
}

template <typename T>
void backward_t(const kernels::AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                const Tensor& lse, const Tensor& dout, Tensor& dq, Tensor& dk, Tensor& dv) {
  const int64_t B = a.B, H = a.H, Tq = a.T, S = a.S, D = a.D, BH = B * H, rows = BH * Tq;
  const int64_t Sp = score_pitch(S), n = rows * Sp;
  const bool bf = use_bf16<T>();
  const GemmMode mode = gemm_mode<T>(bf);
  const cudaDataType_t tt = cuda_type<T>();
  Scratch xs(sizeof(T) * n), ys(sizeof(T) * n);         // scores, then P; dP, then dS (unless bf16)
  Scratch pbf(bf ? sizeof(__nv_bfloat16) * n : 0);      // P in bf16
  Scratch dsbf(bf ? sizeof(__nv_bfloat16) * n : 0);     // dS in bf16
  Scratch qbf(bf ? sizeof(__nv_bfloat16) * BH * Tq * D : 0);
  Scratch kbf(bf ? sizeof(__nv_bfloat16) * BH * S * D : 0);
  Scratch vbf(bf ? sizeof(__nv_bfloat16) * BH * S * D : 0);
  Scratch gbf(bf ? sizeof(__nv_bfloat16) * BH * Tq * D : 0);
  Operand Q = head_operand(q, Tq, D, tt), K = head_operand(k, S, D, tt), V = head_operand(v, S, D, tt),
          G = head_operand(dout, Tq, D, tt);
  if constexpr (std::is_same_v<T, float>) {
    if (bf) {
      cast_to_bf16(q, B, H, Tq, D, qbf.as<__nv_bfloat16>());
      cast_to_bf16(k, B, H, S, D, kbf.as<__nv_bfloat16>());
      cast_to_bf16(v, B, H, S, D, vbf.as<__nv_bfloat16>());
      cast_to_bf16(dout, B, H, Tq, D, gbf.as<__nv_bfloat16>());
      Q = scratch_operand(qbf.as<void>(), H, Tq, D, CUDA_R_16BF);
      K = scratch_operand(kbf.as<void>(), H, S, D, CUDA_R_16BF);
      V = scratch_operand(vbf.as<void>(), H, S, D, CUDA_R_16BF);
      G = scratch_operand(gbf.as<void>(), H, Tq, D, CUDA_R_16BF);
    }
  }
  const Operand X = scratch_operand(xs.as<void>(), H, Tq, Sp, tt), Y = scratch_operand(ys.as<void>(), H, Tq, Sp, tt);
  // X = scale Q K^T, [T, S], exactly as the forward:
  // cublas(T, N, m = S, n = T, k = D, A = k / ks2, B = q / qs2, C = X / Sp).
  gemm_heads(mode, CUBLAS_OP_T, CUBLAS_OP_N, S, Tq, D, a.scale, K, Q, X, B, H);
  // Y = dP = dO V^T, row-major [T, S] = dO [T, D] V^T [D, S]. Column-major: Y^T [S, T] = V [S, D] dO^T [D, T]:
  // cublas(T, N, m = S, n = T, k = D, A = v / vs2, B = dout / gs2, C = Y / Sp).
  gemm_heads(mode, CUBLAS_OP_T, CUBLAS_OP_N, S, Tq, D, 1.0, V, G, Y, B, H);
  const MaskParams<T> mp = mask_params<T>(a);
  const unsigned grid = blocks_for(rows, kRowsPerBlock);
  const dim3 block(32, kRowsPerBlock);
  Operand P = X, dS = Y;  // written over the scores and dP
  if constexpr (std::is_same_v<T, float>) {
    if (bf) {
      launch<softmax_bwd_kernel<T, __nv_bfloat16>>(grid, block, 0, stream(),
          mp, xs.as<T>(), ys.as<T>(), Sp, dptr<T>(lse), dptr<T>(o), o.stride(0), o.stride(1), o.stride(2),
          dptr<T>(dout), dout.stride(0), dout.stride(1), dout.stride(2), D, pbf.as<__nv_bfloat16>(),
          dsbf.as<__nv_bfloat16>(), rows);
      COCA_CUDA_LAUNCH_CHECK();
      P = scratch_operand(pbf.as<void>(), H, Tq, Sp, CUDA_R_16BF);
      dS = scratch_operand(dsbf.as<void>(), H, Tq, Sp, CUDA_R_16BF);
    }
  }
  if (!bf) {
    launch<softmax_bwd_kernel<T, T>>(grid, block, 0, stream(), mp, xs.as<T>(), ys.as<T>(), Sp, dptr<T>(lse), dptr<T>(o),
                                                           o.stride(0), o.stride(1), o.stride(2), dptr<T>(dout),
                                                           dout.stride(0), dout.stride(1), dout.stride(2), D,
                                                           xs.as<T>(), ys.as<T>(), rows);
    COCA_CUDA_LAUNCH_CHECK();
  }
  // dV = P^T dO, row-major [S, D] = P^T [S, T] dO [T, D]. Column-major: dV^T [D, S] = dO^T [D, T] P [T, S],
  // where P's storage (P^T [S, T] column-major, ld Sp) goes in transposed:
  // cublas(N, T, m = D, n = S, k = T, A = dout / gs2, B = P / Sp, C = dv / dvs2).
  gemm_heads(mode, CUBLAS_OP_N, CUBLAS_OP_T, D, S, Tq, 1.0, G, P, head_operand(dv, S, D, tt), B, H);
  // dQ = scale dS K, row-major [T, D] = dS [T, S] K [S, D]. Column-major: dQ^T [D, T] = K^T [D, S] dS^T [S, T]:
  // cublas(N, N, m = D, n = T, k = S, A = k / ks2, B = dS / Sp, C = dq / dqs2).
  gemm_heads(mode, CUBLAS_OP_N, CUBLAS_OP_N, D, Tq, S, a.scale, K, dS, head_operand(dq, Tq, D, tt), B, H);
  // dK = scale dS^T Q, row-major [S, D] = dS^T [S, T] Q [T, D]. Column-major: dK^T [D, S] = Q^T [D, T] dS [T, S]:
  // cublas(N, T, m = D, n = S, k = T, A = q / qs2, B = dS / Sp, C = dk / dks2).
  gemm_heads(mode, CUBLAS_OP_N, CUBLAS_OP_T, D, S, Tq, a.scale, Q, dS, head_operand(dk, S, D, tt), B, H);
}

}  // namespace

int64_t attention_gemm_scratch_bytes(const kernels::AttentionArgs& a, DType dt) {
  const int64_t n = a.B * a.H * a.T * score_pitch(a.S);
  if (dt == DType::f64) return 16 * n;                                // X, Y in double
  if (matmul_precision() == MatmulPrecision::Bf16) return 12 * n;     // X, Y in float; P, dS in bf16
  return 8 * n;                                                       // X, Y in float
}

bool attention_gemm_supported(const kernels::AttentionArgs& a, std::initializer_list<const Tensor*> q_like,
                              std::initializer_list<const Tensor*> k_like) {
  if (a.B <= 0 || a.H <= 0 || a.T <= 0 || a.S <= 0 || a.D <= 0) return false;
  if (a.S > kGemmAttentionMaxKeys || a.T > INT_MAX || a.D > INT_MAX || a.B * a.H > INT_MAX) return false;
  auto fits = [&](const Tensor* t, int64_t rows) {
    if (t->dim() != 4 || (t->stride(3) != 1 && a.D != 1)) return false;
    const int64_t ld = row_ld(*t, rows, a.D);
    return ld >= a.D && ld <= INT_MAX;
  };
  for (const Tensor* t : q_like)
    if (!fits(t, a.T)) return false;
  for (const Tensor* t : k_like)
    if (!fits(t, a.S)) return false;
  return true;
}

void attention_gemm_forward(const kernels::AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v, Tensor& o,
                            Tensor& lse) {
  KernelTimer timer("attention_gemm");
  dispatch_float_dev(q.dtype(), "scaled_dot_product_attention", [&](auto tag) {
    using T = typename decltype(tag)::type;
    forward_t<T>(a, q, k, v, o, lse);
  });
}

void attention_gemm_backward(const kernels::AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v,
                             const Tensor& o, const Tensor& lse, const Tensor& dout, Tensor& dq, Tensor& dk,
                             Tensor& dv) {
  KernelTimer timer("attention_gemm_backward");
  dispatch_float_dev(q.dtype(), "scaled_dot_product_attention_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    backward_t<T>(a, q, k, v, o, lse, dout, dq, dk, dv);
  });
}

}  // namespace coca::cuda::detail
