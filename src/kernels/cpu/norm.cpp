#include "coca/kernels/cpu/norm.h"

#include <omp.h>

#include <cmath>
#include <vector>

#include "coca/tensor/dispatch.h"

namespace coca::cpu {

void layer_norm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, Tensor& y,
                        Tensor& mean, Tensor& rstd) {
  const int64_t C = x.size(-1), R = x.numel() / std::max<int64_t>(C, 1);
  dispatch_float(x.dtype(), "layer_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = x.data<T>();
    const T* w = weight.defined() ? weight.data<T>() : nullptr;
    const T* b = bias.defined() ? bias.data<T>() : nullptr;
    T* yp = y.data<T>();
    T* mp = mean.data<T>();
    T* rp = rstd.data<T>();
#pragma omp parallel for schedule(static) if (R * C >= 16384)
    for (int64_t r = 0; r < R; ++r) {
      const T* xr = xp + r * C;
      T* yr = yp + r * C;
      T s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t c = 0; c < C; ++c) s += xr[c];
      const T m = s / static_cast<T>(C);
      T v = 0;
#pragma omp simd reduction(+ : v)
      for (int64_t c = 0; c < C; ++c) v += (xr[c] - m) * (xr[c] - m);
      const T rs = T(1) / std::sqrt(v / static_cast<T>(C) + static_cast<T>(eps));
      mp[r] = m;
      rp[r] = rs;
      for (int64_t c = 0; c < C; ++c) {
        T h = (xr[c] - m) * rs;
        if (w) h *= w[c];
        if (b) h += b[c];
        yr[c] = h;
      }
    }
  });
}

void layer_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& mean, const Tensor& rstd,
                         const Tensor& dy, Tensor& dx, Tensor& dweight, Tensor& dbias) {
  const int64_t C = x.size(-1), R = x.numel() / std::max<int64_t>(C, 1);
  dispatch_float(x.dtype(), "layer_norm_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = x.data<T>();
    const T* w = weight.defined() ? weight.data<T>() : nullptr;
    const T* mp = mean.data<T>();
    const T* rp = rstd.data<T>();
    const T* gp = dy.data<T>();
    T* dxp = dx.data<T>();
    const bool want_w = dweight.defined(), want_b = dbias.defined();
    const int nthreads = (R * C >= 16384) ? omp_get_max_threads() : 1;
    // Per-thread partial sums for the parameter gradients, reduced at the end.
    std::vector<T> part_w(want_w ? nthreads * C : 0, T(0)), part_b(want_b ? nthreads * C : 0, T(0));
#pragma omp parallel num_threads(nthreads)
    {
      const int tid = omp_get_thread_num();
      T* pw = want_w ? part_w.data() + tid * C : nullptr;
      T* pb = want_b ? part_b.data() + tid * C : nullptr;
#pragma omp for schedule(static)
      for (int64_t r = 0; r < R; ++r) {
        const T* xr = xp + r * C;
        const T* gr = gp + r * C;
        T* dr = dxp + r * C;
        const T m = mp[r], rs = rp[r];
        T sum_g = 0, sum_gx = 0;  // sums of dxhat and dxhat * xhat
        for (int64_t c = 0; c < C; ++c) {
          const T xh = (xr[c] - m) * rs;
          const T dxh = w ? gr[c] * w[c] : gr[c];
          sum_g += dxh;
          sum_gx += dxh * xh;
          if (pw) pw[c] += gr[c] * xh;
          if (pb) pb[c] += gr[c];
        }
        const T inv_c = T(1) / static_cast<T>(C);
        for (int64_t c = 0; c < C; ++c) {
          const T xh = (xr[c] - m) * rs;
          const T dxh = w ? gr[c] * w[c] : gr[c];
          dr[c] = rs * (dxh - inv_c * sum_g - xh * inv_c * sum_gx);
        }
      }
    }
    if (want_w) {
      T* o = dweight.data<T>();
      for (int64_t c = 0; c < C; ++c) {
        T s = 0;
        for (int t = 0; t < nthreads; ++t) s += part_w[t * C + c];
        o[c] = s;
      }
    }
    if (want_b) {
      T* o = dbias.data<T>();
      for (int64_t c = 0; c < C; ++c) {
        T s = 0;
        for (int t = 0; t < nthreads; ++t) s += part_b[t * C + c];
        o[c] = s;
      }
    }
  });
}

void l2_normalize_forward(const Tensor& x, double eps, Tensor& y, Tensor& norm) {
  const int64_t C = x.size(-1), R = x.numel() / std::max<int64_t>(C, 1);
  dispatch_float(x.dtype(), "l2_normalize", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
    T* np = norm.data<T>();
    for (int64_t r = 0; r < R; ++r) {
      const T* xr = xp + r * C;
      T s = 0;
      for (int64_t c = 0; c < C; ++c) s += xr[c] * xr[c];
      const T n = std::sqrt(s);
      np[r] = n;
      const T inv = T(1) / std::max(n, static_cast<T>(eps));
      for (int64_t c = 0; c < C; ++c) yp[r * C + c] = xr[c] * inv;
    }
  });
}

void l2_normalize_backward(const Tensor& y, const Tensor& norm, const Tensor& dy, double eps, Tensor& dx) {
  const int64_t C = y.size(-1), R = y.numel() / std::max<int64_t>(C, 1);
  dispatch_float(y.dtype(), "l2_normalize_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* yp = y.data<T>();
    const T* np = norm.data<T>();
    const T* gp = dy.data<T>();
    T* dp = dx.data<T>();
    for (int64_t r = 0; r < R; ++r) {
      const T* yr = yp + r * C;
      const T* gr = gp + r * C;
      T* dr = dp + r * C;
      if (np[r] > static_cast<T>(eps)) {
        // y = x/|x|: dx = (g - y (g . y)) / |x|
        T dot = 0;
        for (int64_t c = 0; c < C; ++c) dot += gr[c] * yr[c];
        const T inv = T(1) / np[r];
        for (int64_t c = 0; c < C; ++c) dr[c] = (gr[c] - yr[c] * dot) * inv;
      } else {
        const T inv = T(1) / static_cast<T>(eps);
        for (int64_t c = 0; c < C; ++c) dr[c] = gr[c] * inv;
      }
    }
  });
}

}  // namespace coca::cpu
