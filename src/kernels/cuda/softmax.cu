// Row softmax and log-softmax on the GPU: one warp per row, max-subtracted.
#include "coca/kernels/cuda/softmax.h"

#include "common.cuh"

namespace coca::cuda {

namespace {

constexpr int kRowsPerBlock = 8;

template <typename T>
__global__ void softmax_kernel(const T* x, T* y, int64_t rows, int64_t cols, bool log_out) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(kRowsPerBlock) + threadIdx.y;
  if (r >= rows) return;
  const T* in = x + r * cols;
  T* out = y + r * cols;
  T m = neg_inf<T>();
  for (int64_t c = threadIdx.x; c < cols; c += 32) m = max(m, in[c]);
  m = warp_max(m);
  T s = 0;
  for (int64_t c = threadIdx.x; c < cols; c += 32) s += exp(in[c] - m);
  s = warp_sum(s);
  if (log_out) {
    const T lse = m + log(s);
    for (int64_t c = threadIdx.x; c < cols; c += 32) out[c] = in[c] - lse;
  } else {
    const T inv = T(1) / s;
    for (int64_t c = threadIdx.x; c < cols; c += 32) out[c] = exp(in[c] - m) * inv;
  }
}

template <typename T>
__global__ void softmax_backward_kernel(const T* y, const T* g, T* dx, int64_t rows, int64_t cols, bool log_out) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(kRowsPerBlock) + threadIdx.y;
  if (r >= rows) return;
  const T* yr = y + r * cols;
  const T* gr = g + r * cols;
  T* dr = dx + r * cols;
  T s = 0;
  for (int64_t c = threadIdx.x; c < cols; c += 32) s += log_out ? gr[c] : gr[c] * yr[c];
  s = warp_sum(s);
  for (int64_t c = threadIdx.x; c < cols; c += 32)
    dr[c] = log_out ? gr[c] - exp(yr[c]) * s : yr[c] * (gr[c] - s);
}

}  // namespace

void softmax_rows(const Tensor& x, Tensor& y, bool log) {
  KernelTimer timer("softmax");
  const int64_t cols = x.size(-1), rows = x.numel() / std::max<int64_t>(cols, 1);
  if (rows == 0 || cols == 0) return;
  dispatch_float_dev(x.dtype(), log ? "log_softmax" : "softmax", [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch<softmax_kernel<T>>(blocks_for(rows, kRowsPerBlock), dim3(32, kRowsPerBlock), 0, stream(),
        dptr<T>(x), dptr<T>(y), rows, cols, log);
    COCA_CUDA_LAUNCH_CHECK();
  });
}

void softmax_rows_backward(const Tensor& y, const Tensor& g, Tensor& dx, bool log) {
  KernelTimer timer("softmax_backward");
  const int64_t cols = y.size(-1), rows = y.numel() / std::max<int64_t>(cols, 1);
  if (rows == 0 || cols == 0) return;
  dispatch_float_dev(y.dtype(), "softmax_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch<softmax_backward_kernel<T>>(blocks_for(rows, kRowsPerBlock), dim3(32, kRowsPerBlock), 0, stream(),
        dptr<T>(y), dptr<T>(g), dptr<T>(dx), rows, cols, log);
    COCA_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace coca::cuda
