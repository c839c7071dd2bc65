// Fused AdamW: one pass reads p, m, v, g and writes p, m, v (torch.optim.AdamW's order), per
// tensor or for every tensor of a model in one launch (a table of chunks), with the gradient
// clipping scale read from the device.
#include "coca/kernels/cuda/adamw.h"

#include <vector>

#include "common.cuh"

namespace coca::cuda {

namespace {

template <typename T>
__global__ void adamw_kernel(T* p, T* m, T* v, const T* g, int64_t n, T b1, T b2, T eps, T decay, T step_size,
                             T bc2_sqrt) {
  COCA_KERNEL_LOOP(i, n) {
    const T gi = g[i];
    T pi = p[i] * decay;
    const T mi = b1 * m[i] + (T(1) - b1) * gi;
    const T vi = b2 * v[i] + (T(1) - b2) * gi * gi;
    pi -= step_size * mi / (sqrt(vi) / bc2_sqrt + eps);
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
  }
}

// One chunk of one tensor: elements [begin, end).
template <typename T>
struct AdamWChunk {
  T *p, *m, *v;
  const T* g;
  int64_t begin, end;
  T decay;
};

// One block per chunk. The gradient is multiplied by norm_scale[1] (the clipping scale from
// grad_norm_and_scale) as it is read, rounded to T as scale_ rounds it: the result is the
// per-tensor kernel's after clip_grad_norm, bit for bit.
template <typename T>
__global__ void adamw_chunks_kernel(const AdamWChunk<T>* chunks, const double* norm_scale, T b1, T b2, T eps,
                                    T step_size, T bc2_sqrt) {
  const AdamWChunk<T> c = chunks[blockIdx.x];
  const bool scaled = norm_scale != nullptr && norm_scale[1] != 1.0;
  const T scale = norm_scale ? static_cast<T>(norm_scale[1]) : T(1);
  for (int64_t i = c.begin + threadIdx.x; i < c.end; i += blockDim.x) {
    const T gi = scaled ? c.g[i] * scale : c.g[i];
    T pi = c.p[i] * c.decay;
    const T mi = b1 * c.m[i] + (T(1) - b1) * gi;
    const T vi = b2 * c.v[i] + (T(1) - b2) * gi * gi;
    pi -= step_size * mi / (sqrt(vi) / bc2_sqrt + eps);
    c.p[i] = pi;
    c.m[i] = mi;
    c.v[i] = vi;
  }
}

}  // namespace

void adamw_step_many(const std::vector<AdamWTensors>& ts, double beta1, double beta2, double eps, double step_size,
                     double bc2_sqrt, const Tensor& norm_scale) {
  KernelTimer timer("adamw");
  if (ts.empty()) return;
  const DType dt = ts[0].p.dtype();
  for (const AdamWTensors& t : ts)
    COCA_CHECK(t.p.dtype() == dt && t.g.dtype() == dt && t.m.dtype() == dt && t.v.dtype() == dt &&
                   t.p.device() == Device::CUDA && t.g.device() == Device::CUDA && t.m.device() == Device::CUDA &&
                   t.v.device() == Device::CUDA && t.p.is_contiguous() && t.g.is_contiguous() &&
                   t.g.numel() == t.p.numel() && t.m.numel() == t.p.numel() && t.v.numel() == t.p.numel(),
               "adamw_step_many: ", t.p.describe(), " with its gradient and state is not one contiguous CUDA dtype");
  COCA_CHECK(!norm_scale.defined() || (norm_scale.device() == Device::CUDA && norm_scale.dtype() == DType::f64 &&
                                       norm_scale.numel() == 2 && norm_scale.is_contiguous()),
             "adamw_step_many: the clipping scale must be grad_norm_and_scale's [norm, scale] (f64, CUDA)");
  dispatch_float_dev(dt, "AdamW", [&](auto tag) {
    using T = typename decltype(tag)::type;
    std::vector<AdamWChunk<T>> chunks;
    for (const AdamWTensors& t : ts)
      for (int64_t b = 0; b < t.p.numel(); b += kAdamWChunk)
        chunks.push_back({dptr<T>(t.p), dptr<T>(t.m), dptr<T>(t.v), dptr<T>(t.g), b,
                          std::min<int64_t>(t.p.numel(), b + kAdamWChunk), static_cast<T>(t.decay)});
    if (chunks.empty()) return;
    COCA_CHECK(chunks.size() <= 0x7fffffffu, "adamw_step_many: ", chunks.size(), " chunks is over a grid's limit");
    Scratch table(sizeof(AdamWChunk<T>) * chunks.size());
    memcpy(table.as<void>(), chunks.data(), sizeof(AdamWChunk<T>) * chunks.size(), 0);
    launch<adamw_chunks_kernel<T>>(static_cast<unsigned>(chunks.size()), 256, 0, stream(),
                                   table.as<const AdamWChunk<T>>(),
                                   norm_scale.defined() ? dptr<double>(norm_scale) : nullptr, static_cast<T>(beta1),
                                   static_cast<T>(beta2), static_cast<T>(eps), static_cast<T>(step_size),
                                   static_cast<T>(bc2_sqrt));
    COCA_CUDA_LAUNCH_CHECK();
  });
}

void adamw_step(Tensor& p, Tensor& m, Tensor& v, const Tensor& g, double beta1, double beta2, double eps,
                double decay, double step_size, double bc2_sqrt) {
  KernelTimer timer("adamw");
  const int64_t n = p.numel();
  if (n == 0) return;
  dispatch_float_dev(p.dtype(), "AdamW", [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch<adamw_kernel<T>>(grid_for(n), 256, 0, stream(), dptr<T>(p), dptr<T>(m), dptr<T>(v), dptr<T>(g), n,
                                                       static_cast<T>(beta1), static_cast<T>(beta2),
                                                       static_cast<T>(eps), static_cast<T>(decay),
                                                       static_cast<T>(step_size), static_cast<T>(bc2_sqrt));
    COCA_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace coca::cuda
