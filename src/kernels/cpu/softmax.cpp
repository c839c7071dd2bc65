#include "coca/kernels/cpu/softmax.h"

#include <algorithm>
#include <cmath>

#include "coca/kernels/cpu/fast_math.h"
#include "coca/kernels/cpu/profile.h"
#include "coca/tensor/dispatch.h"

namespace coca::cpu {

void softmax_rows(const Tensor& x, Tensor& y, bool log) {
  ProfileScope prof("softmax");
  const int64_t cols = x.size(-1), rows = x.numel() / std::max<int64_t>(cols, 1);
  dispatch_float(x.dtype(), log ? "log_softmax" : "softmax", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
#pragma omp parallel for schedule(static) if (rows * cols >= 16384)
    for (int64_t r = 0; r < rows; ++r) {
      const T* in = xp + r * cols;
      T* out = yp + r * cols;
      T m = in[0];
#pragma omp simd reduction(max : m)
      for (int64_t c = 1; c < cols; ++c) m = std::max(m, in[c]);
      T s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t c = 0; c < cols; ++c) {
        out[c] = softmax_exp(in[c] - m);
        s += out[c];
      }
      if (log) {
        const T lse = m + std::log(s);
#pragma omp simd
        for (int64_t c = 0; c < cols; ++c) out[c] = in[c] - lse;
      } else {
        const T inv = T(1) / s;
#pragma omp simd
        for (int64_t c = 0; c < cols; ++c) out[c] *= inv;
      }
    }
  });
}

void softmax_rows_backward(const Tensor& y, const Tensor& g, Tensor& dx, bool log) {
  ProfileScope prof("softmax_backward");
  const int64_t cols = y.size(-1), rows = y.numel() / std::max<int64_t>(cols, 1);
  dispatch_float(y.dtype(), "softmax_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* yp = y.data<T>();
    const T* gp = g.data<T>();
    T* dp = dx.data<T>();
#pragma omp parallel for schedule(static) if (rows * cols >= 16384)
    for (int64_t r = 0; r < rows; ++r) {
      const T* yr = yp + r * cols;
      const T* gr = gp + r * cols;
      T* dr = dp + r * cols;
      T s = 0;
      if (log) {
#pragma omp simd reduction(+ : s)
        for (int64_t c = 0; c < cols; ++c) s += gr[c];
#pragma omp simd
        for (int64_t c = 0; c < cols; ++c) dr[c] = gr[c] - softmax_exp(yr[c]) * s;
      } else {
#pragma omp simd reduction(+ : s)
        for (int64_t c = 0; c < cols; ++c) s += gr[c] * yr[c];
#pragma omp simd
        for (int64_t c = 0; c < cols; ++c) dr[c] = yr[c] * (gr[c] - s);
      }
    }
  });
}

}  // namespace coca::cpu
