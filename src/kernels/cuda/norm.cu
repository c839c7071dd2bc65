// Layer norm (forward, backward with deterministic parameter-gradient sums) and row L2
// normalisation on the GPU: one warp per row; statistics in the accumulation type.
#include "coca/kernels/cuda/norm.h"

#include "common.cuh"

namespace coca::cuda {

namespace {

constexpr int kRowsPerBlock = 8;

template <typename T>
__global__ void layer_norm_kernel(const T* x, const T* w, const T* b, T eps, T* y, T* mean, T* rstd, int64_t R,
                                  int64_t C) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(kRowsPerBlock) + threadIdx.y;
  if (r >= R) return;
  const T* xr = x + r * C;
  T* yr = y + r * C;
  T s = 0;
  for (int64_t c = threadIdx.x; c < C; c += 32) s += xr[c];
  const T m = warp_sum(s) / static_cast<T>(C);
  T v = 0;
  for (int64_t c = threadIdx.x; c < C; c += 32) v += (xr[c] - m) * (xr[c] - m);
  const T rs = T(1) / sqrt(warp_sum(v) / static_cast<T>(C) + eps);
  if (threadIdx.x == 0) {
    mean[r] = m;
    rstd[r] = rs;
  }
  for (int64_t c = threadIdx.x; c < C; c += 32) {
    T h = (xr[c] - m) * rs;
    if (w) h *= w[c];
    if (b) h += b[c];
    yr[c] = h;
  }
}

template <typename T>
__global__ void layer_norm_dx_kernel(const T* x, const T* w, const T* mean, const T* rstd, const T* g, T* dx,
                                     int64_t R, int64_t C) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(kRowsPerBlock) + threadIdx.y;
  if (r >= R) return;
  const T* xr = x + r * C;
  const T* gr = g + r * C;
  T* dr = dx + r * C;
  const T m = mean[r], rs = rstd[r];
  T sum_g = 0, sum_gx = 0;
  for (int64_t c = threadIdx.x; c < C; c += 32) {
    const T xh = (xr[c] - m) * rs;
    const T dxh = w ? gr[c] * w[c] : gr[c];
    sum_g += dxh;
    sum_gx += dxh * xh;
  }
  sum_g = warp_sum(sum_g);
  sum_gx = warp_sum(sum_gx);
  const T inv_c = T(1) / static_cast<T>(C);
  for (int64_t c = threadIdx.x; c < C; c += 32) {
    const T xh = (xr[c] - m) * rs;
    const T dxh = w ? gr[c] * w[c] : gr[c];
    dr[c] = rs * (dxh - inv_c * sum_g - xh * inv_c * sum_gx);
  }
}

// Partial column sums of g * xhat and g over a chunk of rows: part_w/part_b [chunks, C].
template <typename T>
__global__ void layer_norm_dparams_kernel(const T* x, const T* mean, const T* rstd, const T* g, T* part_w, T* part_b,
                                          int64_t R, int64_t C, int64_t chunk_rows) {
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c >= C) return;
  const int64_t r0 = blockIdx.y * chunk_rows, r1 = min(R, r0 + chunk_rows);
  T sw = 0, sb = 0;
  for (int64_t r = r0; r < r1; ++r) {
    const T gv = g[r * C + c];
    sw += gv * (x[r * C + c] - mean[r]) * rstd[r];
    sb += gv;
  }
  if (part_w) part_w[blockIdx.y * C + c] = sw;
  if (part_b) part_b[blockIdx.y * C + c] = sb;
}

template <typename T>
__global__ void sum_rows_kernel(const T* part, T* out, int64_t chunks, int64_t C) {
  COCA_KERNEL_LOOP(c, C) {
    T s = 0;
    for (int64_t k = 0; k < chunks; ++k) s += part[k * C + c];
    out[c] = s;
  }
}

template <typename T>
__global__ void l2_normalize_kernel(const T* x, T eps, T* y, T* norm, int64_t R, int64_t C) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(kRowsPerBlock) + threadIdx.y;
  if (r >= R) return;
  const T* xr = x + r * C;
  T s = 0;
  for (int64_t c = threadIdx.x; c < C; c += 32) s += xr[c] * xr[c];
  const T n = sqrt(warp_sum(s));
  if (threadIdx.x == 0) norm[r] = n;
  const T inv = T(1) / max(n, eps);
  for (int64_t c = threadIdx.x; c < C; c += 32) y[r * C + c] = xr[c] * inv;
}

template <typename T>
__global__ void l2_normalize_backward_kernel(const T* y, const T* norm, const T* g, T eps, T* dx, int64_t R,
                                             int64_t C) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(kRowsPerBlock) + threadIdx.y;
  if (r >= R) return;
  const T* yr = y + r * C;
  const T* gr = g + r * C;
  T* dr = dx + r * C;
  if (norm[r] > eps) {
    T dot = 0;
    for (int64_t c = threadIdx.x; c < C; c += 32) dot += gr[c] * yr[c];
    dot = warp_sum(dot);
    const T inv = T(1) / norm[r];
    for (int64_t c = threadIdx.x; c < C; c += 32) dr[c] = (gr[c] - yr[c] * dot) * inv;
  } else {
    const T inv = T(1) / eps;
    for (int64_t c = threadIdx.x; c < C; c += 32) dr[c] = gr[c] * inv;
  }
}

template <typename T> const T* opt_ptr(const Tensor& t) { return t.defined() ? dptr<T>(t) : nullptr; }

}  // namespace

void layer_norm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, Tensor& y,
                        Tensor& mean, Tensor& rstd) {
  KernelTimer timer("layer_norm");
  const int64_t C = x.size(-1), R = x.numel() / std::max<int64_t>(C, 1);
  if (R == 0 || C == 0) return;
  dispatch_float_dev(x.dtype(), "layer_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch<layer_norm_kernel<T>>(blocks_for(R, kRowsPerBlock), dim3(32, kRowsPerBlock), 0, stream(),
        dptr<T>(x), opt_ptr<T>(weight), opt_ptr<T>(bias), static_cast<T>(eps), dptr<T>(y), dptr<T>(mean),
        dptr<T>(rstd), R, C);
    COCA_CUDA_LAUNCH_CHECK();
  });
}

void layer_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& mean, const Tensor& rstd,
                         const Tensor& dy, Tensor& dx, Tensor& dweight, Tensor& dbias) {
  KernelTimer timer("layer_norm_backward");
  const int64_t C = x.size(-1), R = x.numel() / std::max<int64_t>(C, 1);
  dispatch_float_dev(x.dtype(), "layer_norm_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (R > 0 && C > 0) {
      launch<layer_norm_dx_kernel<T>>(blocks_for(R, kRowsPerBlock), dim3(32, kRowsPerBlock), 0, stream(),
          dptr<T>(x), opt_ptr<T>(weight), dptr<T>(mean), dptr<T>(rstd), dptr<T>(dy), dptr<T>(dx), R, C);
      COCA_CUDA_LAUNCH_CHECK();
    }
    if (!dweight.defined() && !dbias.defined()) return;
    if (R == 0) {
      if (dweight.defined()) COCA_CUDA_CHECK(cudaMemsetAsync(dweight.raw_data(), 0, sizeof(T) * C, stream()));
      if (dbias.defined()) COCA_CUDA_CHECK(cudaMemsetAsync(dbias.raw_data(), 0, sizeof(T) * C, stream()));
      return;
    }
    const int64_t chunk_rows = 64;
    const int64_t chunks = (R + chunk_rows - 1) / chunk_rows;
    COCA_CHECK(chunks <= 65535, "layer_norm_backward (CUDA): ", R, " rows is too many");
    Scratch pw(dweight.defined() ? sizeof(T) * chunks * C : 0), pb(dbias.defined() ? sizeof(T) * chunks * C : 0);
    launch<layer_norm_dparams_kernel<T>>(dim3(blocks_for(C, 128), static_cast<unsigned>(chunks)), 128, 0, stream(),
        dptr<T>(x), dptr<T>(mean), dptr<T>(rstd), dptr<T>(dy), pw.as<T>(), pb.as<T>(), R, C, chunk_rows);
    COCA_CUDA_LAUNCH_CHECK();
    if (dweight.defined()) {
      launch<sum_rows_kernel<T>>(grid_for(C), 256, 0, stream(), pw.as<T>(), dptr<T>(dweight), chunks, C);
      COCA_CUDA_LAUNCH_CHECK();
    }
    if (dbias.defined()) {
      launch<sum_rows_kernel<T>>(grid_for(C), 256, 0, stream(), pb.as<T>(), dptr<T>(dbias), chunks, C);
      COCA_CUDA_LAUNCH_CHECK();
    }
  });
}

void l2_normalize_forward(const Tensor& x, double eps, Tensor& y, Tensor& norm) {
  KernelTimer timer("l2_normalize");
  const int64_t C = x.size(-1), R = x.numel() / std::max<int64_t>(C, 1);
  if (R == 0) return;
  dispatch_float_dev(x.dtype(), "l2_normalize", [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch<l2_normalize_kernel<T>>(blocks_for(R, kRowsPerBlock), dim3(32, kRowsPerBlock), 0, stream(),
        dptr<T>(x), static_cast<T>(eps), dptr<T>(y), dptr<T>(norm), R, C);
    COCA_CUDA_LAUNCH_CHECK();
  });
}

void l2_normalize_backward(const Tensor& y, const Tensor& norm, const Tensor& dy, double eps, Tensor& dx) {
  KernelTimer timer("l2_normalize_backward");
  const int64_t C = y.size(-1), R = y.numel() / std::max<int64_t>(C, 1);
  if (R == 0) return;
  dispatch_float_dev(y.dtype(), "l2_normalize_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch<l2_normalize_backward_kernel<T>>(blocks_for(R, kRowsPerBlock), dim3(32, kRowsPerBlock), 0, stream(),
        dptr<T>(y), dptr<T>(norm), dptr<T>(dy), static_cast<T>(eps), dptr<T>(dx), R, C);
    COCA_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace coca::cuda
