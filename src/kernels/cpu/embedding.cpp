#include "coca/kernels/cpu/embedding.h"

#include <algorithm>
#include <cstring>

#include "coca/kernels/cpu/profile.h"
#include "coca/tensor/dispatch.h"

namespace coca::cpu {

void embedding_forward(const Tensor& weight, const Tensor& idx, Tensor& out) {
  ProfileScope prof("embedding");
  const int64_t V = weight.size(0), D = weight.size(1), n = idx.numel();
  const int32_t* ip = idx.data<int32_t>();
  for (int64_t i = 0; i < n; ++i)
    COCA_CHECK(ip[i] >= 0 && ip[i] < V, "embedding: index ", ip[i], " at position ", i, " is outside [0, ", V,
               ") for weight ", weight.describe());
  const size_t row_bytes = D * dtype_size(weight.dtype());
  const char* w = static_cast<const char*>(weight.raw_data());
  char* o = static_cast<char*>(out.raw_data());
#pragma omp parallel for schedule(static) if (n * D >= 65536)
  for (int64_t i = 0; i < n; ++i) std::memcpy(o + i * row_bytes, w + ip[i] * row_bytes, row_bytes);
}

void embedding_backward(const Tensor& g, const Tensor& idx, Tensor& dweight) {
  ProfileScope prof("embedding_backward");
  const int64_t D = dweight.size(1), n = idx.numel();
  dispatch_float(dweight.dtype(), "embedding_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int32_t* ip = idx.data<int32_t>();
    const T* gp = g.data<T>();
    T* dw = dweight.data<T>();
    std::memset(dw, 0, sizeof(T) * dweight.numel());
    // Threads own disjoint column blocks and each walks every position in order: repeated
    // indices accumulate in a fixed order (deterministic) and no two threads share an element.
    const int64_t block = 64;
    const int64_t nblocks = (D + block - 1) / block;
#pragma omp parallel for schedule(static) if (n * D >= 65536 && nblocks > 1)
    for (int64_t cb = 0; cb < nblocks; ++cb) {
      const int64_t d0 = cb * block, d1 = std::min(D, d0 + block);
      for (int64_t i = 0; i < n; ++i) {
        T* row = dw + static_cast<int64_t>(ip[i]) * D;
        const T* gr = gp + i * D;
#pragma omp simd
        for (int64_t d = d0; d < d1; ++d) row[d] += gr[d];
      }
    }
  });
}

}  // namespace coca::cpu
