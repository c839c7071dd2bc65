// Fused scaled dot-product attention on the GPU, tiled over keys (forward, dQ) or queries
// (dK/dV) with an online softmax: memory is O(T + S) per head, never a [T, S] buffer.
// One warp owns one query row (or key row, for dK/dV); lane j of a warp scores key (query) j of
// the current 32-wide tile held in shared memory; each lane accumulates D/32 output columns.
// The backward recomputes probabilities from the forward's log-sum-exp (FlashAttention-2's
// scheme, split into a dQ pass and a dK/dV pass so that no atomics are needed).
// attention_forward / attention_backward send CoCa's short sequences to the fused kernels of
// attention_fused.cu and other short key lengths to the cuBLAS implementation in
// attention_gemm.cu instead (the dispatch rule is at the end of this file).
#include "coca/kernels/cuda/attention.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "coca/kernels/cuda/runtime.h"

#include "attention_fused.h"
#include "attention_gemm.h"
#include "attention_mask.cuh"
#include "common.cuh"

namespace coca::cuda {

namespace {

constexpr int kRows = 8;   // warps per block: rows owned
constexpr int kTile = 32;  // keys (queries) per shared-memory tile: one per lane

template <typename T>
struct AttnParams {
  int64_t B, H, Tq, S, D;  // Tq: query rows
  T scale;
  const T* q;
  int64_t qs0, qs1, qs2;
  const T* k;
  int64_t ks0, ks1, ks2;
  const T* v;
  int64_t vs0, vs1, vs2;
  const T* o;  // forward output (backward only)
  int64_t os0, os1, os2;
  detail::MaskParams<T> mask;  // additive, key padding, causal (attention_mask.cuh)
};

template <typename T>
__device__ __forceinline__ T masked_score(const AttnParams<T>& p, int64_t b, int64_t h, int64_t i, int64_t j, T dot) {
  return detail::masked(p.mask, b, h, i, j, dot * p.scale);
}

template <typename T>
__device__ __forceinline__ T dot_rows(const T* a, const T* b, int64_t D) {
  T acc = 0;
  for (int64_t d = 0; d < D; ++d) acc += a[d] * b[d];
  return acc;
}

// Cooperative load of rows [r0, r0 + kTile) of a [rows, D] strided matrix into smem with row pitch `pitch`.
template <typename T>
__device__ __forceinline__ void load_tile(T* dst, int pitch, const T* src, int64_t row_stride, int64_t r0,
                                          int64_t rows, int64_t D) {
  const int tid = threadIdx.y * 32 + threadIdx.x;
  for (int64_t e = tid; e < kTile * D; e += 32 * kRows) {
    const int64_t rr = e / D, d = e % D, r = r0 + rr;
    dst[rr * pitch + d] = r < rows ? src[r * row_stride + d] : T(0);
  }
}

template <typename T, int NR>
__global__ void __launch_bounds__(32 * kRows) attn_forward_kernel(AttnParams<T> p, T* o, int64_t os0, int64_t os1,
                                                                  int64_t os2, T* lse) {
  COCA_DYNAMIC_SHARED(unsigned char, smem_raw, 16);
  const int64_t D = p.D;
  T* Qs = reinterpret_cast<T*>(smem_raw);  // [kRows, D]
  T* Ks = Qs + kRows * D;                  // [kTile, D + 1]
  T* Vs = Ks + kTile * (D + 1);            // [kTile, D]
  const int lane = threadIdx.x, w = threadIdx.y;
  const int64_t b = blockIdx.z, h = blockIdx.y, i0 = blockIdx.x * static_cast<int64_t>(kRows), i = i0 + w;
  const bool active = i < p.Tq;
  const T* qb = p.q + b * p.qs0 + h * p.qs1;
  const T* kb = p.k + b * p.ks0 + h * p.ks1;
  const T* vb = p.v + b * p.vs0 + h * p.vs1;
  for (int64_t d = lane; d < D; d += 32) Qs[w * D + d] = active ? qb[i * p.qs2 + d] : T(0);
  T acc[NR];
#pragma unroll
  for (int r = 0; r < NR; ++r) acc[r] = 0;
  T m = neg_inf<T>(), l = 0;
  int64_t s_end = p.S;
  if (p.mask.causal) s_end = min(p.S, min(i0 + kRows, p.Tq) - 1 + (p.S - p.Tq) + 1);
  for (int64_t j0 = 0; j0 < s_end; j0 += kTile) {
    __syncthreads();
    load_tile(Ks, static_cast<int>(D + 1), kb, p.ks2, j0, p.S, D);
    load_tile(Vs, static_cast<int>(D), vb, p.vs2, j0, p.S, D);
    __syncthreads();
    if (!active) continue;
    const int64_t j = j0 + lane;
    T s = neg_inf<T>();
    if (j < p.S) s = masked_score(p, b, h, i, j, dot_rows(Qs + w * D, Ks + lane * (D + 1), D));
    const T m_new = max(m, warp_max(s));
    if (m_new == neg_inf<T>()) continue;  // every key so far masked (uniform across the warp)
    const T corr = exp(m - m_new);
    const T pj = exp(s - m_new);
    l = l * corr + warp_sum(pj);
#pragma unroll
    for (int r = 0; r < NR; ++r) acc[r] *= corr;
    const int n = static_cast<int>(min(static_cast<int64_t>(kTile), p.S - j0));
    for (int jj = 0; jj < n; ++jj) {
      const T pv = __shfl_sync(0xffffffffu, pj, jj);
#pragma unroll
      for (int r = 0; r < NR; ++r) {
        const int64_t d = lane + 32 * r;
        if (d < D) acc[r] += pv * Vs[jj * D + d];
      }
    }
    m = m_new;
  }
  if (!active) return;
  T* orow = o + b * os0 + h * os1 + i * os2;
  const T inv = l > 0 ? T(1) / l : T(0);
#pragma unroll
  for (int r = 0; r < NR; ++r) {
    const int64_t d = lane + 32 * r;
    if (d < D) orow[d] = acc[r] * inv;
  }
  if (lane == 0) lse[(b * p.H + h) * p.Tq + i] = l > 0 ? m + log(l) : neg_inf<T>();
}

// delta[b, h, i] = dO_i . O_i
template <typename T>
__global__ void attn_delta_kernel(AttnParams<T> p, const T* g, int64_t gs0, int64_t gs1, int64_t gs2, T* delta) {
  const int64_t row = blockIdx.x * static_cast<int64_t>(kRows) + threadIdx.y;
  if (row >= p.B * p.H * p.Tq) return;
  const int64_t i = row % p.Tq, h = (row / p.Tq) % p.H, b = row / (p.Tq * p.H);
  const T* orow = p.o + b * p.os0 + h * p.os1 + i * p.os2;
  const T* grow = g + b * gs0 + h * gs1 + i * gs2;
  T acc = 0;
  for (int64_t d = threadIdx.x; d < p.D; d += 32) acc += orow[d] * grow[d];
  acc = warp_sum(acc);
  if (threadIdx.x == 0) delta[row] = acc;
}

template <typename T, int NR>
__global__ void __launch_bounds__(32 * kRows)
    attn_dq_kernel(AttnParams<T> p, const T* g, int64_t gs0, int64_t gs1, int64_t gs2, const T* lse, const T* delta,
                   T* dq, int64_t dqs0, int64_t dqs1, int64_t dqs2) {
  COCA_DYNAMIC_SHARED(unsigned char, smem_raw, 16);
  const int64_t D = p.D;
  T* Qs = reinterpret_cast<T*>(smem_raw);  // [kRows, D]
  T* Gs = Qs + kRows * D;                  // [kRows, D]
  T* Ks = Gs + kRows * D;                  // [kTile, D + 1]
  T* Vs = Ks + kTile * (D + 1);            // [kTile, D + 1]
  const int lane = threadIdx.x, w = threadIdx.y;
  const int64_t b = blockIdx.z, h = blockIdx.y, i0 = blockIdx.x * static_cast<int64_t>(kRows), i = i0 + w;
  const bool active = i < p.Tq;
  const int64_t row = (b * p.H + h) * p.Tq + i;
  const T l = active ? lse[row] : neg_inf<T>();
  const T di = active ? delta[row] : T(0);
  const bool live = active && l != neg_inf<T>();
  for (int64_t d = lane; d < D; d += 32) {
    Qs[w * D + d] = active ? p.q[b * p.qs0 + h * p.qs1 + i * p.qs2 + d] : T(0);
    Gs[w * D + d] = active ? g[b * gs0 + h * gs1 + i * gs2 + d] : T(0);
  }
  T acc[NR];
#pragma unroll
  for (int r = 0; r < NR; ++r) acc[r] = 0;
  int64_t s_end = p.S;
  if (p.mask.causal) s_end = min(p.S, min(i0 + kRows, p.Tq) - 1 + (p.S - p.Tq) + 1);
  for (int64_t j0 = 0; j0 < s_end; j0 += kTile) {
    __syncthreads();
    load_tile(Ks, static_cast<int>(D + 1), p.k + b * p.ks0 + h * p.ks1, p.ks2, j0, p.S, D);
    load_tile(Vs, static_cast<int>(D + 1), p.v + b * p.vs0 + h * p.vs1, p.vs2, j0, p.S, D);
    __syncthreads();
    if (!live) continue;
    const int64_t j = j0 + lane;
    T ds = 0;
    if (j < p.S) {
      const T s = masked_score(p, b, h, i, j, dot_rows(Qs + w * D, Ks + lane * (D + 1), D));
      const T pr = exp(s - l);
      const T dp = dot_rows(Gs + w * D, Vs + lane * (D + 1), D);
      ds = pr * (dp - di);
    }
    const int n = static_cast<int>(min(static_cast<int64_t>(kTile), p.S - j0));
    for (int jj = 0; jj < n; ++jj) {
      const T dsj = __shfl_sync(0xffffffffu, ds, jj);
#pragma unroll
      for (int r = 0; r < NR; ++r) {
        const int64_t d = lane + 32 * r;
        if (d < D) acc[r] += dsj * Ks[jj * (D + 1) + d];
      }
    }
  }
  if (!active) return;
  T* out = dq + b * dqs0 + h * dqs1 + i * dqs2;
#pragma unroll
  for (int r = 0; r < NR; ++r) {
    const int64_t d = lane + 32 * r;
    if (d < D) out[d] = acc[r] * p.scale;
  }
}

template <typename T, int NR>
__global__ void __launch_bounds__(32 * kRows)
    attn_dkv_kernel(AttnParams<T> p, const T* g, int64_t gs0, int64_t gs1, int64_t gs2, const T* lse, const T* delta,
                    T* dk, int64_t dks0, int64_t dks1, int64_t dks2, T* dv, int64_t dvs0, int64_t dvs1,
                    int64_t dvs2) {
  COCA_DYNAMIC_SHARED(unsigned char, smem_raw, 16);
  const int64_t D = p.D;
  T* KJ = reinterpret_cast<T*>(smem_raw);  // [kRows, D]
  T* VJ = KJ + kRows * D;                  // [kRows, D]
  T* Qs = VJ + kRows * D;                  // [kTile, D + 1]
  T* Gs = Qs + kTile * (D + 1);            // [kTile, D + 1]
  T* Ls = Gs + kTile * (D + 1);            // [kTile]
  T* Ds = Ls + kTile;                      // [kTile]
  const int lane = threadIdx.x, w = threadIdx.y;
  const int64_t b = blockIdx.z, h = blockIdx.y, j0 = blockIdx.x * static_cast<int64_t>(kRows), j = j0 + w;
  const bool active = j < p.S;
  for (int64_t d = lane; d < D; d += 32) {
    KJ[w * D + d] = active ? p.k[b * p.ks0 + h * p.ks1 + j * p.ks2 + d] : T(0);
    VJ[w * D + d] = active ? p.v[b * p.vs0 + h * p.vs1 + j * p.vs2 + d] : T(0);
  }
  T ak[NR], av[NR];
#pragma unroll
  for (int r = 0; r < NR; ++r) ak[r] = av[r] = 0;
  int64_t i_start = 0;
  if (p.mask.causal) i_start = max(static_cast<int64_t>(0), j0 - (p.S - p.Tq)) / kTile * kTile;
  const int64_t head = (b * p.H + h) * p.Tq;
  const int tid = threadIdx.y * 32 + threadIdx.x;
  for (int64_t i0 = i_start; i0 < p.Tq; i0 += kTile) {
    __syncthreads();
    load_tile(Qs, static_cast<int>(D + 1), p.q + b * p.qs0 + h * p.qs1, p.qs2, i0, p.Tq, D);
    load_tile(Gs, static_cast<int>(D + 1), g + b * gs0 + h * gs1, gs2, i0, p.Tq, D);
    if (tid < kTile) {
      Ls[tid] = i0 + tid < p.Tq ? lse[head + i0 + tid] : neg_inf<T>();
      Ds[tid] = i0 + tid < p.Tq ? delta[head + i0 + tid] : T(0);
    }
    __syncthreads();
    if (!active) continue;
    const int64_t i = i0 + lane;
    T pr = 0, ds = 0;
    if (i < p.Tq && Ls[lane] != neg_inf<T>()) {
      const T s = masked_score(p, b, h, i, j, dot_rows(Qs + lane * (D + 1), KJ + w * D, D));
      pr = exp(s - Ls[lane]);
      const T dp = dot_rows(Gs + lane * (D + 1), VJ + w * D, D);
      ds = pr * (dp - Ds[lane]);
    }
    const int n = static_cast<int>(min(static_cast<int64_t>(kTile), p.Tq - i0));
    for (int ii = 0; ii < n; ++ii) {
      const T pi = __shfl_sync(0xffffffffu, pr, ii);
      const T dsi = __shfl_sync(0xffffffffu, ds, ii);
#pragma unroll
      for (int r = 0; r < NR; ++r) {
        const int64_t d = lane + 32 * r;
        if (d < D) {
          av[r] += pi * Gs[ii * (D + 1) + d];
          ak[r] += dsi * Qs[ii * (D + 1) + d];
        }
      }
    }
  }
  if (!active) return;
  T* okr = dk + b * dks0 + h * dks1 + j * dks2;
  T* ovr = dv + b * dvs0 + h * dvs1 + j * dvs2;
#pragma unroll
  for (int r = 0; r < NR; ++r) {
    const int64_t d = lane + 32 * r;
    if (d < D) {
      okr[d] = ak[r] * p.scale;
      ovr[d] = av[r];
    }
  }
}

template <typename T>
AttnParams<T> make_params(const kernels::AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v) {
  AttnParams<T> p{};
  p.B = a.B, p.H = a.H, p.Tq = a.T, p.S = a.S, p.D = a.D;
  p.scale = static_cast<T>(a.scale);
  p.q = dptr<T>(q), p.qs0 = q.stride(0), p.qs1 = q.stride(1), p.qs2 = q.stride(2);
  p.k = dptr<T>(k), p.ks0 = k.stride(0), p.ks1 = k.stride(1), p.ks2 = k.stride(2);
  p.v = dptr<T>(v), p.vs0 = v.stride(0), p.vs1 = v.stride(1), p.vs2 = v.stride(2);
  p.mask = detail::mask_params<T>(a);
  return p;
}

// Calls f(integral_constant<NR>) for the register width that covers head dim D.
template <typename F>
void dispatch_head_dim(int64_t D, F&& f) {
  if (D <= 32) return f(std::integral_constant<int, 1>{});
  if (D <= 64) return f(std::integral_constant<int, 2>{});
  if (D <= 128) return f(std::integral_constant<int, 4>{});
  if (D <= 256) return f(std::integral_constant<int, 8>{});
  throw Error(str_cat("scaled_dot_product_attention (CUDA): head dim ", D, " is over 256"));
}

template <typename K>
void allow_smem(K kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    COCA_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(bytes)));
}

std::atomic<AttentionImpl> g_impl{AttentionImpl::Auto};
std::atomic<int64_t> g_fused_calls{0};

// COCA_CUDA_ATTENTION=fused|tiled|gemm, read once; anything else (or unset) is Auto.
AttentionImpl env_impl() {
  static const AttentionImpl impl = [] {
    const char* e = std::getenv("COCA_CUDA_ATTENTION");
    if (e && std::strcmp(e, "fused") == 0) return AttentionImpl::Fused;
    if (e && std::strcmp(e, "tiled") == 0) return AttentionImpl::Tiled;
    if (e && std::strcmp(e, "gemm") == 0) return AttentionImpl::Gemm;
    return AttentionImpl::Auto;
  }();
  return impl;
}

enum class Path { Fused, Gemm, Tiled };

// The fused kernels when forced or under Auto at fp32/tf32 precision, where they apply
// (attention_fused_supported);
// otherwise the GEMM path when it is forced (set_attention_impl, else the environment) or,
// under Auto (and Fused that does not apply), when S <= 512 and the backward's [B*H, T, S]
// scratch is under 1 GiB; the tiled kernels when forced or when the GEMM path cannot run the
// call. Forward and backward of one call decide alike (the size rules use the backward's
// needs for both; only a gradient operand with strides the kernels cannot take would split
// them), so the backward recomputes P from the same kind of scores the forward's lse came
// from (this matters under bf16 precision).
Path choose_path(const kernels::AttentionArgs& a, DType dt, std::initializer_list<const Tensor*> q_like,
                 std::initializer_list<const Tensor*> k_like) {
  AttentionImpl impl = g_impl.load(std::memory_order_relaxed);
  if (impl == AttentionImpl::Auto) impl = env_impl();
  if (impl == AttentionImpl::Tiled) return Path::Tiled;
  // Under bf16 precision Auto keeps the tensor-core GEMM path: the fused kernels are SIMT float32
  // and have not been timed against it on a GPU yet (tests/gpu/run_on_device.sh, with and
  // without COCA_CUDA_ATTENTION=fused, decides).
  const bool fused_by_default = impl == AttentionImpl::Auto && matmul_precision() != MatmulPrecision::Bf16;
  if (fused_by_default || impl == AttentionImpl::Fused) {
    bool ok = detail::attention_fused_supported(a, dt, q_like);
    ok = ok && detail::attention_fused_supported(a, dt, k_like);
    if (ok) return Path::Fused;
  }
  if (!detail::attention_gemm_supported(a, q_like, k_like)) return Path::Tiled;
  if (impl == AttentionImpl::Gemm) return Path::Gemm;
  return detail::attention_gemm_scratch_bytes(a, dt) < (int64_t{1} << 30) ? Path::Gemm : Path::Tiled;
}

}  // namespace

void set_attention_impl(AttentionImpl impl) { g_impl.store(impl, std::memory_order_relaxed); }
AttentionImpl attention_impl() { return g_impl.load(std::memory_order_relaxed); }
int64_t attention_fused_calls() { return g_fused_calls.load(std::memory_order_relaxed); }

void attention_forward(const kernels::AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v, Tensor& o,
                       Tensor& lse) {
  const Path path = choose_path(a, q.dtype(), {&q, &o}, {&k, &v});
  if (path == Path::Fused) {
    g_fused_calls.fetch_add(1, std::memory_order_relaxed);
    return detail::attention_fused_forward(a, q, k, v, o, lse);
  }
  if (path == Path::Gemm) return detail::attention_gemm_forward(a, q, k, v, o, lse);
  KernelTimer timer("attention");
  if (a.B * a.H * a.T == 0) return;
  COCA_CHECK(a.H <= 65535 && a.B <= 65535, "scaled_dot_product_attention (CUDA): B ", a.B, " or H ", a.H,
             " exceeds 65535");
  dispatch_float_dev(q.dtype(), "scaled_dot_product_attention", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const AttnParams<T> p = make_params<T>(a, q, k, v);
    dispatch_head_dim(a.D, [&](auto nr) {
      constexpr int NR = decltype(nr)::value;
      const size_t smem = sizeof(T) * (kRows * a.D + kTile * (a.D + 1) + kTile * a.D);
      constexpr auto kernel = attn_forward_kernel<T, NR>;
      allow_smem(kernel, smem);
      const dim3 grid(blocks_for(a.T, kRows), static_cast<unsigned>(a.H), static_cast<unsigned>(a.B));
      launch<kernel>(grid, dim3(32, kRows), smem, stream(), p, dptr<T>(o), o.stride(0), o.stride(1), o.stride(2),
                                                        dptr<T>(lse));
      COCA_CUDA_LAUNCH_CHECK();
    });
  });
}

void attention_backward(const kernels::AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v,
                        const Tensor& o, const Tensor& lse, const Tensor& dout, Tensor& dq, Tensor& dk,
                        Tensor& dv) {
  const Path path = choose_path(a, q.dtype(), {&q, &o, &dout, &dq}, {&k, &v, &dk, &dv});
  if (path == Path::Fused) {
    g_fused_calls.fetch_add(1, std::memory_order_relaxed);
    return detail::attention_fused_backward(a, q, k, v, o, lse, dout, dq, dk, dv);
  }
  if (path == Path::Gemm) return detail::attention_gemm_backward(a, q, k, v, o, lse, dout, dq, dk, dv);
  KernelTimer timer("attention_backward");
  dispatch_float_dev(q.dtype(), "scaled_dot_product_attention_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    AttnParams<T> p = make_params<T>(a, q, k, v);
    p.o = dptr<T>(o), p.os0 = o.stride(0), p.os1 = o.stride(1), p.os2 = o.stride(2);
    const T* g = dptr<T>(dout);
    const int64_t gs0 = dout.stride(0), gs1 = dout.stride(1), gs2 = dout.stride(2);
    const int64_t rows = a.B * a.H * a.T;
    Scratch delta(sizeof(T) * std::max<int64_t>(rows, 1));
    if (rows > 0) {
      launch<attn_delta_kernel<T>>(blocks_for(rows, kRows), dim3(32, kRows), 0, stream(), p, g, gs0, gs1, gs2,
                                                                                    delta.as<T>());
      COCA_CUDA_LAUNCH_CHECK();
    }
    dispatch_head_dim(a.D, [&](auto nr) {
      constexpr int NR = decltype(nr)::value;
      if (a.T > 0) {
        const size_t smem = sizeof(T) * (2 * kRows * a.D + 2 * kTile * (a.D + 1));
        constexpr auto kernel = attn_dq_kernel<T, NR>;
        allow_smem(kernel, smem);
        const dim3 grid(blocks_for(a.T, kRows), static_cast<unsigned>(a.H), static_cast<unsigned>(a.B));
        launch<kernel>(grid, dim3(32, kRows), smem, stream(), p, g, gs0, gs1, gs2, dptr<T>(lse), delta.as<T>(),
                                                          dptr<T>(dq), dq.stride(0), dq.stride(1), dq.stride(2));
        COCA_CUDA_LAUNCH_CHECK();
      }
      if (a.S > 0) {
        const size_t smem = sizeof(T) * (2 * kRows * a.D + 2 * kTile * (a.D + 1) + 2 * kTile);
        constexpr auto kernel = attn_dkv_kernel<T, NR>;
        allow_smem(kernel, smem);
        const dim3 grid(blocks_for(a.S, kRows), static_cast<unsigned>(a.H), static_cast<unsigned>(a.B));
        launch<kernel>(grid, dim3(32, kRows), smem, stream(), p, g, gs0, gs1, gs2, dptr<T>(lse), delta.as<T>(),
                                                          dptr<T>(dk), dk.stride(0), dk.stride(1), dk.stride(2),
                                                          dptr<T>(dv), dv.stride(0), dv.stride(1), dv.stride(2));
        COCA_CUDA_LAUNCH_CHECK();
      }
    });
  });
}

}  // namespace coca::cuda
