// Fused attention for CoCa's short sequences (query lengths up to a few hundred, key lengths up
// to ~340 at head dim 64): SIMT kernels, float32 accumulation, with one head's K and V in shared
// memory and the scores / probabilities of a tile of queries beside them, so that nothing of
// size [B*H, T, S] ever reaches global memory (the GEMM path in attention_gemm.cu writes two
// such float buffers per backward). No WMMA / tensor-core intrinsics: the CUDA emulation does
// not run them.
//
// Forward, attn_fused_fwd_kernel: one block of kFwdThreads threads per (batch, head, tile of
// kFwdRows queries), grid (ceil(T / kFwdRows), H, B). Shared memory (floats):
//   Ks [S, D+1] (odd pitch: the score loop walks keys across lanes), Vs [S, D],
//   Qs [kFwdRows, D], Ps [kFwdRows, S|1].
// Phases, a __syncthreads between each: load K, V, the tile's Q; scores (thread per (query,
// key), key fastest): scale q.k, masks as attention_mask.cuh; softmax, one warp per query row:
// row max, exp, sum, P = exp(s - m) / sum and lse = m + log(sum) (a row with every key masked
// gives P = 0 and lse = -inf, as the CPU kernel); O = P V (thread per (query, column), column
// fastest) written straight to o. Global writes: o and lse only.
//
// Backward, attn_fused_bwd_kernel: one block of kBwdThreads threads per (batch, head), grid
// (H, B), looping over tiles of kBwdRows queries, so that dK and dV are accumulated by one
// block with no atomics. Shared memory (floats):
//   Ks, Vs [S, D+1]; Qs, Gs (dO) [kBwdRows, D]; Ps, Ds (dS) [kBwdRows, S|1]; lse, delta [kBwdRows].
// Per tile: load Q, dO, lse and delta_i = dO_i . O_i (one warp per row); P = exp(masked scaled
// q.k - lse) and dS = P (dO_i . v_j - delta_i) per (query, key); then dQ rows of the tile =
// scale dS K (written to dq), and for every (key, column) the tile's sum_i dS_ij Q_i and
// sum_i P_ij dO_i added to dk / dv. Each dk / dv element belongs to one thread for the whole
// loop (the same index mapping every tile), which reads back what it wrote the tile before:
// no races, the same order every run, so the results are deterministic. dk gets the scale on
// the last tile.
//
// bf16 operands: under MatmulPrecision::Bf16 (float32 tensors) Q, K, V and dO are rounded to
// bf16 as they are loaded, and P and dS are rounded to bf16 before the products that use them,
// the GEMM path's rounding points (it casts its operands and writes P and dS in bf16); scores,
// softmax, lse, delta and every sum stay float32.
#include "attention_fused.h"

#include <algorithm>
#include <atomic>

#include "attention_mask.cuh"
#include "common.cuh"

namespace coca::cuda::detail {

namespace {

constexpr int kFwdThreads = 128;  // 4 warps
constexpr int kFwdRows = 16;      // queries per forward block
constexpr int kBwdThreads = 256;  // 8 warps
constexpr int kBwdRows = 16;      // queries per backward tile

struct FusedParams {
  int64_t B, H, Tq, S, D;
  float scale;
  bool bf;  // bf16 operands (see the top of the file)
  const float* q;
  int64_t qs0, qs1, qs2;
  const float* k;
  int64_t ks0, ks1, ks2;
  const float* v;
  int64_t vs0, vs1, vs2;
  MaskParams<float> mask;
};

__device__ __forceinline__ float rnd(float x, bool bf) { return bf ? __bfloat162float(__float2bfloat16(x)) : x; }

// Row pitch of the [rows, S] score tiles: odd, so that rows a warp reads at one key differ in bank.
__device__ __forceinline__ int score_pitch(int S) { return S | 1; }

template <int DC>
__global__ void __launch_bounds__(kFwdThreads)
    attn_fused_fwd_kernel(FusedParams p, float* o, int64_t os0, int64_t os1, int64_t os2, float* lse) {
  COCA_DYNAMIC_SHARED(unsigned char, smem_raw, 16);
  const int D = DC > 0 ? DC : static_cast<int>(p.D);
  const int S = static_cast<int>(p.S), KP = D + 1, PP = score_pitch(S);
  float* Ks = reinterpret_cast<float*>(smem_raw);  // [S, KP]
  float* Vs = Ks + S * KP;                          // [S, D]
  float* Qs = Vs + S * D;                           // [kFwdRows, D]
  float* Ps = Qs + kFwdRows * D;                    // [kFwdRows, PP]
  const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
  const int64_t b = blockIdx.z, h = blockIdx.y, i0 = blockIdx.x * static_cast<int64_t>(kFwdRows);
  const int qn = static_cast<int>(min(static_cast<int64_t>(kFwdRows), p.Tq - i0));
  const bool bf = p.bf;
  const float* kb = p.k + b * p.ks0 + h * p.ks1;
  const float* vb = p.v + b * p.vs0 + h * p.vs1;
  const float* qb = p.q + b * p.qs0 + h * p.qs1 + i0 * p.qs2;
  for (int e = tid; e < S * D; e += kFwdThreads) {
    const int j = e / D, d = e - j * D;
    Ks[j * KP + d] = rnd(kb[j * p.ks2 + d], bf);
    Vs[j * D + d] = rnd(vb[j * p.vs2 + d], bf);
  }
  for (int e = tid; e < qn * D; e += kFwdThreads) {
    const int i = e / D, d = e - i * D;
    Qs[i * D + d] = rnd(qb[i * p.qs2 + d], bf);
  }
  __syncthreads();
  // Scores: thread per (query i, key j), keys across lanes.
  for (int e = tid; e < qn * S; e += kFwdThreads) {
    const int i = e / S, j = e - i * S;
    const float* qr = Qs + i * D;
    const float* kr = Ks + j * KP;
    float acc = 0.f;
#pragma unroll
    for (int d = 0; d < D; ++d) acc += qr[d] * kr[d];
    Ps[i * PP + j] = masked(p.mask, b, h, i0 + i, j, acc * p.scale);
  }
  __syncthreads();
  // Softmax: warp w takes rows w, w + 4, ... (uniform across the warp); each lane reads and
  // writes only its own keys lane, lane + 32, ...
  for (int i = w; i < qn; i += kFwdThreads / 32) {
    float* pr = Ps + i * PP;
    float m = neg_inf<float>();
    for (int j = lane; j < S; j += 32) m = max(m, pr[j]);
    m = warp_max(m);
    float sum = 0.f;
    if (m != neg_inf<float>()) {
      for (int j = lane; j < S; j += 32) {
        const float x = exp(pr[j] - m);  // 0 for a masked key
        pr[j] = x;
        sum += x;
      }
    }
    sum = warp_sum(sum);
    const bool live = m != neg_inf<float>();
    const float inv = live ? 1.f / sum : 0.f;
    for (int j = lane; j < S; j += 32) pr[j] = live ? rnd(pr[j] * inv, bf) : 0.f;
    if (lane == 0) lse[(b * p.H + h) * p.Tq + i0 + i] = live ? m + log(sum) : neg_inf<float>();
  }
  __syncthreads();
  // O = P V: thread per (query i, column d), columns across lanes.
  float* ob = o + b * os0 + h * os1 + i0 * os2;
  for (int e = tid; e < qn * D; e += kFwdThreads) {
    const int i = e / D, d = e - i * D;
    const float* pr = Ps + i * PP;
    float acc = 0.f;
    for (int j = 0; j < S; ++j) acc += pr[j] * Vs[j * D + d];
    ob[i * os2 + d] = acc;
  }
}

template <int DC>
__global__ void __launch_bounds__(kBwdThreads)
    attn_fused_bwd_kernel(FusedParams p, const float* o, int64_t os0, int64_t os1, int64_t os2, const float* g,
                          int64_t gs0, int64_t gs1, int64_t gs2, const float* lse, float* dq, int64_t dqs0,
                          int64_t dqs1, int64_t dqs2, float* dk, int64_t dks0, int64_t dks1, int64_t dks2, float* dv,
                          int64_t dvs0, int64_t dvs1, int64_t dvs2) {
  COCA_DYNAMIC_SHARED(unsigned char, smem_raw, 16);
  const int D = DC > 0 ? DC : static_cast<int>(p.D);
  const int S = static_cast<int>(p.S), KP = D + 1, PP = score_pitch(S);
  float* Ks = reinterpret_cast<float*>(smem_raw);  // [S, KP]
  float* Vs = Ks + S * KP;                          // [S, KP]
  float* Qs = Vs + S * KP;                          // [kBwdRows, D]
  float* Gs = Qs + kBwdRows * D;                    // [kBwdRows, D]
  float* Ps = Gs + kBwdRows * D;                    // [kBwdRows, PP]
  float* Ds = Ps + kBwdRows * PP;                   // [kBwdRows, PP]
  float* Ls = Ds + kBwdRows * PP;                   // [kBwdRows]
  float* Dl = Ls + kBwdRows;                        // [kBwdRows]
  const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
  const int64_t b = blockIdx.y, h = blockIdx.x;
  const bool bf = p.bf;
  const float scale = p.scale;
  const float* kb = p.k + b * p.ks0 + h * p.ks1;
  const float* vb = p.v + b * p.vs0 + h * p.vs1;
  for (int e = tid; e < S * D; e += kBwdThreads) {
    const int j = e / D, d = e - j * D;
    Ks[j * KP + d] = rnd(kb[j * p.ks2 + d], bf);
    Vs[j * KP + d] = rnd(vb[j * p.vs2 + d], bf);
  }
  float* dkb = dk + b * dks0 + h * dks1;
  float* dvb = dv + b * dvs0 + h * dvs1;
  const int64_t head = (b * p.H + h) * p.Tq;
  for (int64_t i0 = 0; i0 < p.Tq; i0 += kBwdRows) {
    const int qn = static_cast<int>(min(static_cast<int64_t>(kBwdRows), p.Tq - i0));
    const bool first = i0 == 0, last = i0 + kBwdRows >= p.Tq;
    __syncthreads();  // the previous tile's readers of Qs, Gs, Ps, Ds are done
    const float* qb = p.q + b * p.qs0 + h * p.qs1 + i0 * p.qs2;
    const float* gb = g + b * gs0 + h * gs1 + i0 * gs2;
    for (int e = tid; e < qn * D; e += kBwdThreads) {
      const int i = e / D, d = e - i * D;
      Qs[i * D + d] = rnd(qb[i * p.qs2 + d], bf);
      Gs[i * D + d] = rnd(gb[i * gs2 + d], bf);
    }
    // delta_i = dO_i . O_i from the float tensors (as the GEMM path), one warp per row.
    for (int i = w; i < qn; i += kBwdThreads / 32) {
      const float* orow = o + b * os0 + h * os1 + (i0 + i) * os2;
      const float* grow = gb + i * gs2;
      float acc = 0.f;
      for (int d = lane; d < D; d += 32) acc += orow[d] * grow[d];
      acc = warp_sum(acc);
      if (lane == 0) {
        Dl[i] = acc;
        Ls[i] = lse[head + i0 + i];
      }
    }
    __syncthreads();
    // P and dS: thread per (query i, key j), keys across lanes.
    for (int e = tid; e < qn * S; e += kBwdThreads) {
      const int i = e / S, j = e - i * S;
      const float l = Ls[i];
      float pv = 0.f, dsv = 0.f;
      if (l != neg_inf<float>()) {  // a fully masked row: P = dS = 0
        const float* qr = Qs + i * D;
        const float* gr = Gs + i * D;
        const float* kr = Ks + j * KP;
        const float* vr = Vs + j * KP;
        float s = 0.f, dp = 0.f;
#pragma unroll
        for (int d = 0; d < D; ++d) {
          s += qr[d] * kr[d];
          dp += gr[d] * vr[d];
        }
        pv = exp(masked(p.mask, b, h, i0 + i, j, s * scale) - l);
        dsv = pv * (dp - Dl[i]);
      }
      Ps[i * PP + j] = rnd(pv, bf);
      Ds[i * PP + j] = rnd(dsv, bf);
    }
    __syncthreads();
    // dQ rows of the tile = scale dS K: thread per (query i, column d).
    float* dqb = dq + b * dqs0 + h * dqs1 + i0 * dqs2;
    for (int e = tid; e < qn * D; e += kBwdThreads) {
      const int i = e / D, d = e - i * D;
      const float* dr = Ds + i * PP;
      float acc = 0.f;
      for (int j = 0; j < S; ++j) acc += dr[j] * Ks[j * KP + d];
      dqb[i * dqs2 + d] = acc * scale;
    }
    // dK += dS^T Q, dV += P^T dO for this tile: thread per (key j, column d), the same thread
    // for an element on every tile.
    for (int e = tid; e < S * D; e += kBwdThreads) {
      const int j = e / D, d = e - j * D;
      float ak = 0.f, av = 0.f;
      for (int i = 0; i < qn; ++i) {
        ak += Ds[i * PP + j] * Qs[i * D + d];
        av += Ps[i * PP + j] * Gs[i * D + d];
      }
      float* kd = dkb + j * dks2 + d;
      float* vd = dvb + j * dvs2 + d;
      if (!first) {
        ak += *kd;
        av += *vd;
      }
      *kd = last ? ak * scale : ak;
      *vd = av;
    }
  }
}

FusedParams make_params(const kernels::AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v) {
  FusedParams p{};
  p.B = a.B, p.H = a.H, p.Tq = a.T, p.S = a.S, p.D = a.D;
  p.scale = static_cast<float>(a.scale);
  p.bf = matmul_precision() == MatmulPrecision::Bf16;
  p.q = dptr<float>(q), p.qs0 = q.stride(0), p.qs1 = q.stride(1), p.qs2 = q.stride(2);
  p.k = dptr<float>(k), p.ks0 = k.stride(0), p.ks1 = k.stride(1), p.ks2 = k.stride(2);
  p.v = dptr<float>(v), p.vs0 = v.stride(0), p.vs1 = v.stride(1), p.vs2 = v.stride(2);
  p.mask = mask_params<float>(a);
  return p;
}

// f(integral_constant<DC>) for head dim D: compile-time 8, 16, 32, 64 (the configs' head dims),
// DC = 0 (D read at run time) for any other D <= 64.
template <typename F>
void dispatch_fused_head_dim(int64_t D, F&& f) {
  switch (D) {
    case 8: return f(std::integral_constant<int, 8>{});
    case 16: return f(std::integral_constant<int, 16>{});
    case 32: return f(std::integral_constant<int, 32>{});
    case 64: return f(std::integral_constant<int, 64>{});
    default: return f(std::integral_constant<int, 0>{});
  }
}

template <typename K>
void set_smem(K kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    COCA_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(bytes)));
}

// The current device's per-block shared-memory opt-in limit.
size_t max_smem_per_block() {
  int dev = 0;
  COCA_CUDA_CHECK(cudaGetDevice(&dev));
  static std::atomic<size_t> cached[64] = {};
  if (dev >= 0 && dev < 64 && cached[dev].load(std::memory_order_relaxed))
    return cached[dev].load(std::memory_order_relaxed);
  cudaDeviceProp prop{};
  COCA_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  const size_t v = prop.sharedMemPerBlockOptin ? prop.sharedMemPerBlockOptin : prop.sharedMemPerBlock;
  if (dev >= 0 && dev < 64) cached[dev].store(v, std::memory_order_relaxed);
  return v;
}

}  // namespace

size_t attention_fused_forward_smem(const kernels::AttentionArgs& a) {
  const int64_t S = a.S, D = a.D;
  return sizeof(float) * static_cast<size_t>(S * (D + 1) + S * D + kFwdRows * D + kFwdRows * (S | 1));
}

size_t attention_fused_backward_smem(const kernels::AttentionArgs& a) {
  const int64_t S = a.S, D = a.D;
  return sizeof(float) *
         static_cast<size_t>(2 * S * (D + 1) + 2 * kBwdRows * D + 2 * kBwdRows * (S | 1) + 2 * kBwdRows);
}

bool attention_fused_supported(const kernels::AttentionArgs& a, DType dt,
                               std::initializer_list<const Tensor*> operands) {
  if (dt != DType::f32) return false;
  if (a.B <= 0 || a.H <= 0 || a.T <= 0 || a.S <= 0 || a.D <= 0) return false;
  if (a.D > kFusedAttentionMaxHeadDim || a.B > 65535 || a.H > 65535 || a.S > 4096) return false;
  for (const Tensor* t : operands)
    if (t->dim() != 4 || (t->stride(3) != 1 && a.D != 1)) return false;
  const size_t limit = max_smem_per_block();
  return attention_fused_forward_smem(a) <= limit && attention_fused_backward_smem(a) <= limit;
}

void attention_fused_forward(const kernels::AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v,
                             Tensor& o, Tensor& lse) {
  KernelTimer timer("attention_fused");
  COCA_CHECK(q.dtype() == DType::f32, "scaled_dot_product_attention (CUDA, fused): dtype ", dtype_name(q.dtype()),
             " is not float32");
  const FusedParams p = make_params(a, q, k, v);
  const size_t smem = attention_fused_forward_smem(a);
  dispatch_fused_head_dim(a.D, [&](auto dc) {
    constexpr int DC = decltype(dc)::value;
    constexpr auto kernel = attn_fused_fwd_kernel<DC>;
    set_smem(kernel, smem);
    const dim3 grid(blocks_for(a.T, kFwdRows), static_cast<unsigned>(a.H), static_cast<unsigned>(a.B));
    launch<kernel>(grid, dim3(kFwdThreads), smem, stream(), p, dptr<float>(o), o.stride(0), o.stride(1), o.stride(2),
                   dptr<float>(lse));
    COCA_CUDA_LAUNCH_CHECK();
  });
}

void attention_fused_backward(const kernels::AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v,
                              const Tensor& o, const Tensor& lse, const Tensor& dout, Tensor& dq, Tensor& dk,
                              Tensor& dv) {
  KernelTimer timer("attention_fused_backward");
  COCA_CHECK(q.dtype() == DType::f32, "scaled_dot_product_attention_backward (CUDA, fused): dtype ",
             dtype_name(q.dtype()), " is not float32");
  const FusedParams p = make_params(a, q, k, v);
  const size_t smem = attention_fused_backward_smem(a);
  dispatch_fused_head_dim(a.D, [&](auto dc) {
    constexpr int DC = decltype(dc)::value;
    constexpr auto kernel = attn_fused_bwd_kernel<DC>;
    set_smem(kernel, smem);
    const dim3 grid(static_cast<unsigned>(a.H), static_cast<unsigned>(a.B));
    launch<kernel>(grid, dim3(kBwdThreads), smem, stream(), p, dptr<float>(o), o.stride(0), o.stride(1), o.stride(2),
                   dptr<float>(dout), dout.stride(0), dout.stride(1), dout.stride(2), dptr<float>(lse),
                   dptr<float>(dq), dq.stride(0), dq.stride(1), dq.stride(2), dptr<float>(dk), dk.stride(0),
                   dk.stride(1), dk.stride(2), dptr<float>(dv), dv.stride(0), dv.stride(1), dv.stride(2));
    COCA_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace coca::cuda::detail
