// Fused AdamW: one pass reads p, m, v, g and writes p, m, v (torch.optim.AdamW's order).
#include "coca/kernels/cuda/adamw.h"

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

}  // namespace

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
