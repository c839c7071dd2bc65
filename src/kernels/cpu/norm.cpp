// Row-wise normalisations: layer norm and L2 normalisation over the last dim of contiguous
// [R, C] data. Rows are split across OpenMP threads; every inner loop is a branch-free
// `omp simd` loop (the reductions need the pragma: without -ffast-math the compiler may not
// reorder a floating-point sum on its own).
#include "coca/kernels/cpu/norm.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "coca/kernels/cpu/profile.h"
#include "coca/tensor/dispatch.h"

namespace coca::cpu {

namespace {

constexpr int64_t kParallelElements = 16384;  // below this a thread team costs more than it saves

// weight/bias as plain arrays: a missing weight is ones, a missing bias zeros, so that the
// inner loops need no branch.
template <typename T>
const T* param_or(const Tensor& p, std::vector<T>& fallback, int64_t C, T value) {
  if (p.defined()) return p.data<T>();
  fallback.assign(C, value);
  return fallback.data();
}

}  // namespace

void layer_norm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, Tensor& y,
                        Tensor& mean, Tensor& rstd) {
  ProfileScope prof("layer_norm");
  const int64_t C = x.size(-1), R = x.numel() / std::max<int64_t>(C, 1);
  dispatch_float(x.dtype(), "layer_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    std::vector<T> ones, zeros;
    const T* w = param_or<T>(weight, ones, C, T(1));
    const T* b = param_or<T>(bias, zeros, C, T(0));
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
    T* mp = mean.data<T>();
    T* rp = rstd.data<T>();
    const T inv_c = T(1) / static_cast<T>(C);
#pragma omp parallel for schedule(static) if (R * C >= kParallelElements)
    for (int64_t r = 0; r < R; ++r) {
      const T* xr = xp + r * C;
      T* yr = yp + r * C;
      T s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t c = 0; c < C; ++c) s += xr[c];
      const T m = s * inv_c;
      T v = 0;  // two-pass variance: no cancellation when |mean| >> std
#pragma omp simd reduction(+ : v)
      for (int64_t c = 0; c < C; ++c) v += (xr[c] - m) * (xr[c] - m);
      const T rs = T(1) / std::sqrt(v * inv_c + static_cast<T>(eps));
      mp[r] = m;
      rp[r] = rs;
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) yr[c] = (xr[c] - m) * rs * w[c] + b[c];
    }
  });
}

void layer_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& mean, const Tensor& rstd,
                         const Tensor& dy, Tensor& dx, Tensor& dweight, Tensor& dbias) {
  ProfileScope prof("layer_norm_backward");
  const int64_t C = x.size(-1), R = x.numel() / std::max<int64_t>(C, 1);
  dispatch_float(x.dtype(), "layer_norm_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    std::vector<T> ones;
    const T* w = param_or<T>(weight, ones, C, T(1));
    const T* xp = x.data<T>();
    const T* mp = mean.data<T>();
    const T* rp = rstd.data<T>();
    const T* gp = dy.data<T>();
    T* dxp = dx.data<T>();
    const bool want_w = dweight.defined(), want_b = dbias.defined();
    const T inv_c = T(1) / static_cast<T>(C);
    const int nthreads = R * C >= kParallelElements ? omp_get_max_threads() : 1;
    // Per-thread partial sums for the parameter gradients (no atomics), reduced at the end in
    // thread order, so that the result does not depend on scheduling.
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
#pragma omp simd reduction(+ : sum_g, sum_gx)
        for (int64_t c = 0; c < C; ++c) {
          const T dxh = gr[c] * w[c];
          sum_g += dxh;
          sum_gx += dxh * (xr[c] - m) * rs;
        }
        const T a = sum_g * inv_c, bcoef = sum_gx * inv_c;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) {
          const T xh = (xr[c] - m) * rs;
          dr[c] = rs * (gr[c] * w[c] - a - xh * bcoef);
        }
        if (pw) {
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) pw[c] += gr[c] * (xr[c] - m) * rs;
        }
        if (pb) {
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) pb[c] += gr[c];
        }
      }
    }
    auto reduce_parts = [&](const std::vector<T>& part, Tensor& out) {
      T* o = out.data<T>();
      for (int64_t c = 0; c < C; ++c) o[c] = part[c];
      for (int t = 1; t < nthreads; ++t)
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) o[c] += part[t * C + c];
    };
    if (want_w) reduce_parts(part_w, dweight);
    if (want_b) reduce_parts(part_b, dbias);
  });
}

void l2_normalize_forward(const Tensor& x, double eps, Tensor& y, Tensor& norm) {
  ProfileScope prof("l2_normalize");
  const int64_t C = x.size(-1), R = x.numel() / std::max<int64_t>(C, 1);
  dispatch_float(x.dtype(), "l2_normalize", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
    T* np = norm.data<T>();
#pragma omp parallel for schedule(static) if (R * C >= kParallelElements)
    for (int64_t r = 0; r < R; ++r) {
      const T* xr = xp + r * C;
      T* yr = yp + r * C;
      T s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t c = 0; c < C; ++c) s += xr[c] * xr[c];
      const T n = std::sqrt(s);
      np[r] = n;
      const T inv = T(1) / std::max(n, static_cast<T>(eps));
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) yr[c] = xr[c] * inv;
    }
  });
}

void l2_normalize_backward(const Tensor& y, const Tensor& norm, const Tensor& dy, double eps, Tensor& dx) {
  ProfileScope prof("l2_normalize_backward");
  const int64_t C = y.size(-1), R = y.numel() / std::max<int64_t>(C, 1);
  dispatch_float(y.dtype(), "l2_normalize_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* yp = y.data<T>();
    const T* np = norm.data<T>();
    const T* gp = dy.data<T>();
    T* dp = dx.data<T>();
#pragma omp parallel for schedule(static) if (R * C >= kParallelElements)
    for (int64_t r = 0; r < R; ++r) {
      const T* yr = yp + r * C;
      const T* gr = gp + r * C;
      T* dr = dp + r * C;
      if (np[r] > static_cast<T>(eps)) {
        // y = x / |x|: dx = (g - y (g . y)) / |x|
        T dot = 0;
#pragma omp simd reduction(+ : dot)
        for (int64_t c = 0; c < C; ++c) dot += gr[c] * yr[c];
        const T inv = T(1) / np[r];
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) dr[c] = (gr[c] - yr[c] * dot) * inv;
      } else {  // the norm is clamped to eps: y = x / eps is linear
        const T inv = T(1) / static_cast<T>(eps);
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) dr[c] = gr[c] * inv;
      }
    }
  });
}

}  // namespace coca::cpu
