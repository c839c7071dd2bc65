#include "coca/kernels/cpu/softmax.h"

#include <cmath>

#include "coca/tensor/dispatch.h"

namespace coca::cpu {

void softmax_rows(const Tensor& x, Tensor& y, bool log) {
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
      for (int64_t c = 1; c < cols; ++c) m = in[c] > m ? in[c] : m;
      T s = 0;
      for (int64_t c = 0; c < cols; ++c) {
        out[c] = std::exp(in[c] - m);
        s += out[c];
      }
      if (log) {
        const T lse = m + std::log(s);
        for (int64_t c = 0; c < cols; ++c) out[c] = in[c] - lse;
      } else {
        const T inv = T(1) / s;
        for (int64_t c = 0; c < cols; ++c) out[c] *= inv;
      }
    }
  });
}

void softmax_rows_backward(const Tensor& y, const Tensor& g, Tensor& dx, bool log) {
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
        for (int64_t c = 0; c < cols; ++c) s += gr[c];
        for (int64_t c = 0; c < cols; ++c) dr[c] = gr[c] - std::exp(yr[c]) * s;
      } else {
        for (int64_t c = 0; c < cols; ++c) s += gr[c] * yr[c];
        for (int64_t c = 0; c < cols; ++c) dr[c] = yr[c] * (gr[c] - s);
      }
    }
  });
}

}  // namespace coca::cpu
