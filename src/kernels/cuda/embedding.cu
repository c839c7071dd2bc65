// Embedding gather and scatter-add on the GPU. Index validity is checked on the device without
// waiting for it: a bad index gathers zeros and scatters nothing, and the first one is kept on
// the device until check_indices() raises it (the trainer checks at logging steps).
#include "coca/kernels/cuda/embedding.h"

#include "common.cuh"

namespace coca::cuda {

namespace {

// {found, position, index, rows of the weight}: the first bad index since check_indices().
int64_t* g_bad_index_slot = nullptr;  // allocated by the first gather on the device

int64_t* bad_index_slot() {
  if (g_bad_index_slot == nullptr) {
    auto* p = static_cast<int64_t*>(device_alloc(4 * sizeof(int64_t)));
    const int64_t zero[4] = {0, 0, 0, 0};
    memcpy(p, zero, sizeof zero, 0);
    g_bad_index_slot = p;
  }
  return g_bad_index_slot;
}

template <typename T>
__global__ void gather_kernel(const T* w, const int32_t* idx, T* out, int64_t n, int64_t V, int64_t D,
                              unsigned long long* first_bad) {
  COCA_KERNEL_LOOP(e, n * D) {
    const int64_t i = e / D, d = e % D;
    const int32_t row = idx[i];
    if (row < 0 || row >= V) {
      if (d == 0) atomicMin(first_bad, static_cast<unsigned long long>(i));
      out[e] = st<T, float>(0.f);
      continue;
    }
    out[e] = w[static_cast<int64_t>(row) * D + d];
  }
}

// One thread: the launch's first bad position (if any) into the slot, unless one is kept already.
__global__ void record_bad_index_kernel(const unsigned long long* first_bad, const int32_t* idx, int64_t V,
                                        int64_t* slot) {
  const unsigned long long i = *first_bad;
  if (i == ~0ull || slot[0] != 0) return;
  slot[0] = 1;
  slot[1] = static_cast<int64_t>(i);
  slot[2] = idx[i];
  slot[3] = V;
}

template <typename T>
__global__ void scatter_add_kernel(const T* g, const int32_t* idx, T* dw, int64_t n, int64_t V, int64_t D) {
  COCA_KERNEL_LOOP(e, n * D) {
    const int64_t i = e / D, d = e % D;
    const int32_t row = idx[i];
    if (row < 0 || row >= V) continue;  // recorded by the gather
    atomicAdd(dw + static_cast<int64_t>(row) * D + d, g[e]);
  }
}

}  // namespace

void embedding_forward(const Tensor& weight, const Tensor& idx, Tensor& out) {
  KernelTimer timer("embedding");
  const int64_t V = weight.size(0), D = weight.size(1), n = idx.numel();
  if (n == 0 || D == 0) return;
  Scratch bad(sizeof(unsigned long long));
  const unsigned long long none = ~0ull;
  COCA_CUDA_CHECK(cudaMemcpyAsync(bad.as<void>(), &none, sizeof(none), cudaMemcpyHostToDevice, stream()));
  dispatch_float_dev<true>(weight.dtype(), "embedding", [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch<gather_kernel<T>>(grid_for(n * D), 256, 0, stream(), dptr<T>(weight), dptr<int32_t>(idx), dptr<T>(out), n, V,
                                                           D, bad.as<unsigned long long>());
    COCA_CUDA_LAUNCH_CHECK();
  });
  launch<record_bad_index_kernel>(1, 1, 0, stream(), bad.as<unsigned long long>(), dptr<int32_t>(idx), V,
                                  bad_index_slot());
  COCA_CUDA_LAUNCH_CHECK();
}

void check_indices() {
  if (g_bad_index_slot == nullptr) return;  // no gather ran on the device
  int64_t bad[4] = {0, 0, 0, 0};
  memcpy(bad, g_bad_index_slot, sizeof bad, 1);
  if (bad[0] == 0) return;
  const int64_t clear[4] = {0, 0, 0, 0};
  memcpy(g_bad_index_slot, clear, sizeof clear, 0);
  throw Error(str_cat("embedding: index ", bad[2], " at position ", bad[1], " is outside [0, ", bad[3], ")"));
}

void embedding_backward(const Tensor& g, const Tensor& idx, Tensor& dweight) {
  KernelTimer timer("embedding_backward");
  const int64_t V = dweight.size(0), D = dweight.size(1), n = idx.numel();
  dispatch_float_dev(dweight.dtype(), "embedding_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    COCA_CUDA_CHECK(cudaMemsetAsync(dweight.raw_data(), 0, sizeof(T) * dweight.numel(), stream()));
    if (n == 0 || D == 0) return;
    launch<scatter_add_kernel<T>>(grid_for(n * D), 256, 0, stream(), dptr<T>(g), dptr<int32_t>(idx), dptr<T>(dweight),
                                                                n, V, D);
    COCA_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace coca::cuda
