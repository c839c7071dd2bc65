// Fused cross-entropy on the GPU: one warp per row computes the log-sum-exp and the row's loss;
// one block sums the per-row losses in float64 in a fixed order (so the result does not depend on
// launch shape) and writes the loss and its denominator on the device: nothing waits for it.
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

// The first target outside [0, C) that is not the ignore index, kept on the device until
// check_targets(): {found, row, value, classes, ignore index}. Allocated once, never freed.
int64_t* g_bad_target_slot = nullptr;  // allocated by the first cross-entropy on the device

int64_t* bad_target_slot() {
  if (g_bad_target_slot == nullptr) {
    auto* p = static_cast<int64_t*>(device_alloc(5 * sizeof(int64_t)));
    const int64_t zero[5] = {0, 0, 0, 0, 0};
    memcpy(p, zero, sizeof zero, 0);
    g_bad_target_slot = p;
  }
  return g_bad_target_slot;
}

constexpr int kFinishThreads = 256;

// One block: out = sum(row_loss) / denom (0 where denom is 0), denom = normalizer > 0 ? normalizer
// : the count of counted rows. Thread i sums rows i, i + 256, ... in order, then the block sums
// the threads in a fixed order.
template <typename T>
__global__ void ce_finish_kernel(const double* row_loss, const int* valid, const int32_t* t, int64_t N, int64_t C,
                                 int64_t ignore, double normalizer, T* out, double* denom, int64_t* bad_target) {
  COCA_SHARED(double, part_loss, kFinishThreads);
  COCA_SHARED(double, part_count, kFinishThreads);
  COCA_SHARED(int64_t, part_bad, kFinishThreads);
  double loss = 0, count = 0;
  int64_t bad = N;
  for (int64_t r = threadIdx.x; r < N; r += kFinishThreads) {
    loss += row_loss[r];
    count += valid[r] == 1 ? 1.0 : 0.0;
    if (valid[r] < 0 && r < bad) bad = r;
  }
  part_loss[threadIdx.x] = loss;
  part_count[threadIdx.x] = count;
  part_bad[threadIdx.x] = bad;
  __syncthreads();
  if (threadIdx.x != 0) return;
  double total = 0, counted = 0;
  for (int i = 0; i < kFinishThreads; ++i) {
    total += part_loss[i];
    counted += part_count[i];
    if (part_bad[i] < bad) bad = part_bad[i];
  }
  const double dn = normalizer > 0 ? normalizer : counted;
  *denom = dn;
  *out = static_cast<T>(dn > 0 ? total / dn : 0.0);
  if (bad < N && bad_target[0] == 0) {
    bad_target[0] = 1;
    bad_target[1] = bad;
    bad_target[2] = t[bad];
    bad_target[3] = C;
    bad_target[4] = ignore;
  }
}

// dlogits = g / denom * (softmax - onehot(target)) per counted row, 0 for ignored rows; g (the
// incoming gradient) and denom are read on the device.
template <typename T>
__global__ void ce_backward_kernel(const T* x, int64_t ld, const int32_t* t, int64_t ignore, const T* lse,
                                   const T* g, const double* denom, T* d, int64_t N, int64_t C) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(kRowsPerBlock) + threadIdx.y;
  if (r >= N) return;
  const T scale = *denom > 0 ? static_cast<T>(static_cast<double>(*g) / *denom) : T(0);
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

void cross_entropy_forward(const Tensor& logits, int64_t ld, const Tensor& targets, int64_t ignore_index,
                           Tensor& lse, double normalizer, Tensor& out, Tensor& denom) {
  KernelTimer timer("cross_entropy");
  const int64_t N = logits.size(0), C = logits.size(1);
  Scratch row_loss(sizeof(double) * std::max<int64_t>(N, 1)), valid(sizeof(int) * std::max<int64_t>(N, 1));
  dispatch_float_dev(logits.dtype(), "cross_entropy", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (N > 0) {
      launch<ce_forward_kernel<T>>(blocks_for(N, kRowsPerBlock), dim3(32, kRowsPerBlock), 0, stream(),
          dptr<T>(logits), ld, dptr<int32_t>(targets), ignore_index, dptr<T>(lse), row_loss.as<double>(),
          valid.as<int>(), N, C);
      COCA_CUDA_LAUNCH_CHECK();
    }
    launch<ce_finish_kernel<T>>(dim3(1), dim3(kFinishThreads), 0, stream(), row_loss.as<double>(), valid.as<int>(),
        dptr<int32_t>(targets), N, C, ignore_index, normalizer, dptr<T>(out), dptr<double>(denom), bad_target_slot());
    COCA_CUDA_LAUNCH_CHECK();
  });
}

void cross_entropy_backward(const Tensor& logits, int64_t ld, const Tensor& targets, int64_t ignore_index,
                            const Tensor& lse, const Tensor& g, const Tensor& denom, Tensor& dlogits) {
  KernelTimer timer("cross_entropy_backward");
  const int64_t N = logits.size(0), C = logits.size(1);
  if (N == 0) return;
  dispatch_float_dev(logits.dtype(), "cross_entropy_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch<ce_backward_kernel<T>>(blocks_for(N, kRowsPerBlock), dim3(32, kRowsPerBlock), 0, stream(),
        dptr<T>(logits), ld, dptr<int32_t>(targets), ignore_index, dptr<T>(lse), dptr<T>(g), dptr<double>(denom),
        dptr<T>(dlogits), N, C);
    COCA_CUDA_LAUNCH_CHECK();
  });
}

void check_targets() {
  if (g_bad_target_slot == nullptr) return;  // no cross-entropy ran on the device
  int64_t bad[5] = {0, 0, 0, 0, 0};
  memcpy(bad, bad_target_slot(), sizeof bad, 1);
  if (bad[0] == 0) return;
  const int64_t clear[5] = {0, 0, 0, 0, 0};
  memcpy(bad_target_slot(), clear, sizeof clear, 0);
  throw Error(str_cat("cross_entropy: target ", bad[2], " at row ", bad[1], " is outside [0, ", bad[3],
                      ") and is not the ignore index ", bad[4]));
}

}  // namespace coca::cuda
