// Fused cross-entropy on the GPU: one warp per row computes the log-sum-exp and the row's loss;
// the host sums the per-row losses in float64 (so the result does not depend on launch shape).
#include "coca/kernels/cuda/cross_entropy.h"

#include <vector>

#include "common.cuh"

namespace coca::cuda {

namespace {

constexpr int kRowsPerBlock = 8;

// row_loss[r]: lse - logit[target] (0 when ignored); valid[r]: 1 counted, 0 ignored, -1 bad target.
template <typename T>
__global__ void ce_forward_kernel(const T* x, int64_t ld, const int32_t* t, int64_t ignore, T* lse, double* row_loss,
                                  int* valid, int64_t N, int64_t C) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(kRowsPerBlock) + threadIdx.y;
  if (r >= N) return;
  const T* row = x + r * ld;
  T m = neg_inf<T>();
  for (int64_t c = threadIdx.x; c < C; c += 32) m = max(m, row[c]);
  m = warp_max(m);
  T s = 0;
  for (int64_t c = threadIdx.x; c < C; c += 32) s += exp(row[c] - m);
  s = warp_sum(s);
  if (threadIdx.x != 0) return;
  const T l = m + log(s);
  lse[r] = l;
  const int32_t tr = t[r];
  if (tr == ignore) {
    row_loss[r] = 0;
    valid[r] = 0;
  } else if (tr < 0 || tr >= C) {
    row_loss[r] = 0;
    valid[r] = -1;
  } else {
    row_loss[r] = static_cast<double>(l - row[tr]);
    valid[r] = 1;
  }
}

template <typename T>
__global__ void ce_backward_kernel(const T* x, int64_t ld, const int32_t* t, int64_t ignore, const T* lse, T scale,
                                   T* d, int64_t N, int64_t C) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(kRowsPerBlock) + threadIdx.y;
  if (r >= N) return;
  T* dr = d + r * C;
  const int32_t tr = t[r];
  if (tr == ignore) {
    for (int64_t c = threadIdx.x; c < C; c += 32) dr[c] = T(0);
    return;
  }
  const T* row = x + r * ld;
  const T l = lse[r];
  for (int64_t c = threadIdx.x; c < C; c += 32) dr[c] = scale * exp(row[c] - l) - (c == tr ? scale : T(0));
}

}  // namespace

double cross_entropy_forward(const Tensor& logits, int64_t ld, const Tensor& targets, int64_t ignore_index,
                             Tensor& lse, int64_t& count) {
  KernelTimer timer("cross_entropy");
  const int64_t N = logits.size(0), C = logits.size(1);
  count = 0;
  if (N == 0) return 0.0;
  Scratch row_loss(sizeof(double) * N), valid(sizeof(int) * N);
  dispatch_float_dev(logits.dtype(), "cross_entropy", [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch<ce_forward_kernel<T>>(blocks_for(N, kRowsPerBlock), dim3(32, kRowsPerBlock), 0, stream(),
        dptr<T>(logits), ld, dptr<int32_t>(targets), ignore_index, dptr<T>(lse), row_loss.as<double>(),
        valid.as<int>(), N, C);
    COCA_CUDA_LAUNCH_CHECK();
  });
  std::vector<double> losses(N);
  std::vector<int> ok(N);
  memcpy(losses.data(), row_loss.as<double>(), sizeof(double) * N, 1);
  memcpy(ok.data(), valid.as<int>(), sizeof(int) * N, 1);
  double total = 0;
  for (int64_t r = 0; r < N; ++r) {
    if (ok[r] < 0) {
      int32_t value = 0;
      memcpy(&value, dptr<int32_t>(targets) + r, sizeof(value), 1);
      throw Error(str_cat("cross_entropy: target ", value, " at row ", r, " is outside [0, ", C,
                          ") and is not the ignore index ", ignore_index));
    }
    total += losses[r];
    count += ok[r];
  }
  return total;
}

void cross_entropy_backward(const Tensor& logits, int64_t ld, const Tensor& targets, int64_t ignore_index,
                            const Tensor& lse, double scale, Tensor& dlogits) {
  KernelTimer timer("cross_entropy_backward");
  const int64_t N = logits.size(0), C = logits.size(1);
  if (N == 0) return;
  dispatch_float_dev(logits.dtype(), "cross_entropy_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch<ce_backward_kernel<T>>(blocks_for(N, kRowsPerBlock), dim3(32, kRowsPerBlock), 0, stream(),
        dptr<T>(logits), ld, dptr<int32_t>(targets), ignore_index, dptr<T>(lse), static_cast<T>(scale),
        dptr<T>(dlogits), N, C);
    COCA_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace coca::cuda
