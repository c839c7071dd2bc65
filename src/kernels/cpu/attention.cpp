// Fused scaled dot-product attention on the CPU. Per (batch, head): scores via one GEMM into a
// [T, S] scratch, masks, a stable row softmax, and one GEMM for the output. The forward keeps
// only the row log-sum-exp; the backward recomputes the probabilities from it.
#include "coca/kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "coca/kernels/cpu/copy.h"
#include "coca/kernels/cpu/fast_math.h"
#include "coca/kernels/cpu/matmul.h"
#include "coca/kernels/cpu/profile.h"
#include "coca/tensor/dispatch.h"

namespace coca::cpu {

namespace {

// Parallel over (batch, head) with one single-threaded BLAS call per head when there are
// enough heads to share out; otherwise a serial loop whose BLAS calls use every core. Tiny
// problems stay serial: a team's start-up costs more than they do.
bool parallel_over_heads(const AttentionArgs& a) {
  return a.B * a.H >= 2 && a.B * a.H * a.T * a.S * std::max<int64_t>(a.D, 1) >= (1 << 16);
}

template <typename T>
struct Head {
  const T* q;
  const T* k;
  const T* v;
  int64_t lq, lk, lv;  // row strides
};

template <typename T>
Head<T> head(const Tensor& q, const Tensor& k, const Tensor& v, int64_t b, int64_t h) {
  return {q.data<T>() + b * q.stride(0) + h * q.stride(1), k.data<T>() + b * k.stride(0) + h * k.stride(1),
          v.data<T>() + b * v.stride(0) + h * v.stride(1), q.stride(2), k.stride(2), v.stride(2)};
}

// scores[T, S] = scale * q k^T + masks; masked entries become -inf.
template <typename T>
void scores(const AttentionArgs& a, const Head<T>& hd, int64_t b, int64_t h, T* s) {
  const int64_t T_ = a.T, S = a.S;
  gemm<T>(false, true, T_, S, a.D, static_cast<T>(a.scale), hd.q, hd.lq, hd.k, hd.lk, T(0), s, S);
  const T neg_inf = -std::numeric_limits<T>::infinity();
  if (a.additive.defined()) {
    const auto& st = a.additive_strides;
    const T* m = a.additive.data<T>() + b * st[0] + h * st[1];
    for (int64_t i = 0; i < T_; ++i)
      for (int64_t j = 0; j < S; ++j) s[i * S + j] += m[i * st[2] + j * st[3]];
  }
  if (a.key_padding.defined()) {
    const uint8_t* pad = a.key_padding.data<uint8_t>() + b * S;
    for (int64_t j = 0; j < S; ++j)
      if (pad[j])
        for (int64_t i = 0; i < T_; ++i) s[i * S + j] = neg_inf;
  }
  if (a.causal) {
    // Queries are the last T of S positions. With T > S the first T - S queries precede every
    // key: the start index is negative and their whole row is masked.
    const int64_t shift = S - T_;
    for (int64_t i = 0; i < T_; ++i)
      for (int64_t j = std::max<int64_t>(i + shift + 1, 0); j < S; ++j) s[i * S + j] = neg_inf;
  }
}

// In place: row = softmax(row); returns the row's log-sum-exp. A row with every key masked
// (all -inf) becomes zeros with lse = -inf.
template <typename T>
T softmax_row(T* row, int64_t S) {
  T m = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t j = 0; j < S; ++j) m = std::max(m, row[j]);
  if (m == -std::numeric_limits<T>::infinity()) {
    std::fill(row, row + S, T(0));
    return m;
  }
  T sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < S; ++j) {
    row[j] = softmax_exp(row[j] - m);
    sum += row[j];
  }
  const T inv = T(1) / sum;
#pragma omp simd
  for (int64_t j = 0; j < S; ++j) row[j] *= inv;
  return m + std::log(sum);
}

}  // namespace

void attention_forward(const AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v, Tensor& o,
                       Tensor& lse) {
  ProfileScope prof("attention");
  dispatch_float(q.dtype(), "scaled_dot_product_attention", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* lp = lse.data<T>();
    T* op = o.data<T>();
    if (a.S == 0) {  // no keys: every row is fully masked (and BLAS rejects ld = 0)
      o.fill_(0);
      lse.fill_(-std::numeric_limits<double>::infinity());
      return;
    }
#pragma omp parallel if (parallel_over_heads(a))
    {
      std::vector<T> s(a.T * a.S);
#pragma omp for schedule(dynamic) collapse(2)
      for (int64_t b = 0; b < a.B; ++b) {
        for (int64_t h = 0; h < a.H; ++h) {
          const Head<T> hd = head<T>(q, k, v, b, h);
          scores<T>(a, hd, b, h, s.data());
          T* l = lp + (b * a.H + h) * a.T;
          for (int64_t i = 0; i < a.T; ++i) l[i] = softmax_row(s.data() + i * a.S, a.S);
          T* out = op + b * o.stride(0) + h * o.stride(1);
          gemm<T>(false, false, a.T, a.D, a.S, T(1), s.data(), a.S, hd.v, hd.lv, T(0), out, o.stride(2));
        }
      }
    }
  });
}

void attention_backward(const AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                        const Tensor& lse, const Tensor& dout, Tensor& dq, Tensor& dk, Tensor& dv) {
  ProfileScope prof("attention_backward");
  dispatch_float(q.dtype(), "scaled_dot_product_attention_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* lp = lse.data<T>();
#pragma omp parallel if (parallel_over_heads(a))
    {
      std::vector<T> p(a.T * a.S), dp(a.T * a.S), di(a.T);
#pragma omp for schedule(dynamic) collapse(2)
      for (int64_t b = 0; b < a.B; ++b) {
        for (int64_t h = 0; h < a.H; ++h) {
          const Head<T> hd = head<T>(q, k, v, b, h);
          const T* l = lp + (b * a.H + h) * a.T;
          const T* ob = o.data<T>() + b * o.stride(0) + h * o.stride(1);
          const T* gb = dout.data<T>() + b * dout.stride(0) + h * dout.stride(1);
          T* dqb = dq.data<T>() + b * dq.stride(0) + h * dq.stride(1);
          T* dkb = dk.data<T>() + b * dk.stride(0) + h * dk.stride(1);
          T* dvb = dv.data<T>() + b * dv.stride(0) + h * dv.stride(1);
          // P = exp(scores - lse), recomputed.
          scores<T>(a, hd, b, h, p.data());
          for (int64_t i = 0; i < a.T; ++i) {
            T* row = p.data() + i * a.S;
            if (l[i] == -std::numeric_limits<T>::infinity()) {
              for (int64_t j = 0; j < a.S; ++j) row[j] = 0;
            } else {
              const T li = l[i];
#pragma omp simd
              for (int64_t j = 0; j < a.S; ++j) row[j] = softmax_exp(row[j] - li);
            }
            // D_i = dO_i . O_i
            const T* orow = ob + i * o.stride(2);
            const T* grow = gb + i * dout.stride(2);
            T acc = 0;
#pragma omp simd reduction(+ : acc)
            for (int64_t d = 0; d < a.D; ++d) acc += orow[d] * grow[d];
            di[i] = acc;
          }
          // dV = P^T dO   [S, D]
          gemm<T>(true, false, a.S, a.D, a.T, T(1), p.data(), a.S, gb, dout.stride(2), T(0), dvb, dv.stride(2));
          // dP = dO V^T   [T, S]
          gemm<T>(false, true, a.T, a.S, a.D, T(1), gb, dout.stride(2), hd.v, hd.lv, T(0), dp.data(), a.S);
          // dS = P * (dP - D_i), kept in dp
          for (int64_t i = 0; i < a.T; ++i) {
            T* dr = dp.data() + i * a.S;
            const T* pr = p.data() + i * a.S;
            const T dii = di[i];
#pragma omp simd
            for (int64_t j = 0; j < a.S; ++j) dr[j] = pr[j] * (dr[j] - dii);
          }
          const T sc = static_cast<T>(a.scale);
          // dQ = scale dS K   [T, D];  dK = scale dS^T Q   [S, D]
          gemm<T>(false, false, a.T, a.D, a.S, sc, dp.data(), a.S, hd.k, hd.lk, T(0), dqb, dq.stride(2));
          gemm<T>(true, false, a.S, a.D, a.T, sc, dp.data(), a.S, hd.q, hd.lq, T(0), dkb, dk.stride(2));
        }
      }
    }
  });
}

}  // namespace coca::cpu
