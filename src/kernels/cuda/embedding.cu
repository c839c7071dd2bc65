// Embedding gather and scatter-add on the GPU. Index validity is checked on the device and the
// first bad position is reported after the launch.
#include "coca/kernels/cuda/embedding.h"

#include "common.cuh"

namespace coca::cuda {

namespace {

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

template <typename T>
__global__ void scatter_add_kernel(const T* g, const int32_t* idx, T* dw, int64_t n, int64_t D) {
  COCA_KERNEL_LOOP(e, n * D) {
    const int64_t i = e / D, d = e % D;
    atomicAdd(dw + static_cast<int64_t>(idx[i]) * D + d, g[e]);
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
  unsigned long long first = 0;
  memcpy(&first, bad.as<void>(), sizeof(first), 1);
  if (first != none) {
    int32_t value = 0;
    memcpy(&value, dptr<int32_t>(idx) + first, sizeof(value), 1);
    throw Error(str_cat("embedding: index ", value, " at position ", first, " is outside [0, ", V,
                        ") for weight ", weight.describe()));
  }
}

void embedding_backward(const Tensor& g, const Tensor& idx, Tensor& dweight) {
  KernelTimer timer("embedding_backward");
  const int64_t D = dweight.size(1), n = idx.numel();
  dispatch_float_dev(dweight.dtype(), "embedding_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    COCA_CUDA_CHECK(cudaMemsetAsync(dweight.raw_data(), 0, sizeof(T) * dweight.numel(), stream()));
    if (n == 0 || D == 0) return;
    launch<scatter_add_kernel<T>>(grid_for(n * D), 256, 0, stream(), dptr<T>(g), dptr<int32_t>(idx), dptr<T>(dweight),
                                                                n, D);
    COCA_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace coca::cuda
