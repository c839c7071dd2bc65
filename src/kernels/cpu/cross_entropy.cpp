#include "coca/kernels/cpu/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "coca/kernels/cpu/fast_math.h"
#include "coca/kernels/cpu/profile.h"
#include "coca/tensor/dispatch.h"

namespace coca::cpu {

double cross_entropy_forward(const Tensor& logits, int64_t ld, const Tensor& targets, int64_t ignore_index,
                             Tensor& lse, int64_t& count) {
  ProfileScope prof("cross_entropy");
  const int64_t N = logits.size(0), C = logits.size(1);
  const int32_t* t = targets.data<int32_t>();
  for (int64_t r = 0; r < N; ++r)
    COCA_CHECK(t[r] == ignore_index || (t[r] >= 0 && t[r] < C), "cross_entropy: target ", t[r], " at row ", r,
               " is outside [0, ", C, ") and is not the ignore index ", ignore_index);
  return dispatch_float(logits.dtype(), "cross_entropy", [&](auto tag) -> double {
    using T = typename decltype(tag)::type;
    const T* x = logits.data<T>();
    T* l = lse.data<T>();
    double total = 0;
    int64_t n_valid = 0;
#pragma omp parallel for schedule(static) reduction(+ : total, n_valid) if (N * C >= 16384)
    for (int64_t r = 0; r < N; ++r) {
      const T* row = x + r * ld;
      T m = row[0];
#pragma omp simd reduction(max : m)
      for (int64_t c = 1; c < C; ++c) m = std::max(m, row[c]);
      T s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t c = 0; c < C; ++c) s += softmax_exp(row[c] - m);
      l[r] = m + std::log(s);
      if (t[r] != ignore_index) {
        total += static_cast<double>(l[r] - row[t[r]]);
        n_valid += 1;
      }
    }
    count = n_valid;
    return total;
  });
}

void cross_entropy_backward(const Tensor& logits, int64_t ld, const Tensor& targets, int64_t ignore_index,
                            const Tensor& lse, double scale, Tensor& dlogits) {
  ProfileScope prof("cross_entropy_backward");
  const int64_t N = logits.size(0), C = logits.size(1);
  dispatch_float(logits.dtype(), "cross_entropy_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* x = logits.data<T>();
    const T* l = lse.data<T>();
    const int32_t* t = targets.data<int32_t>();
    T* d = dlogits.data<T>();
    const T sc = static_cast<T>(scale);
#pragma omp parallel for schedule(static) if (N * C >= 16384)
    for (int64_t r = 0; r < N; ++r) {
      T* dr = d + r * C;
      if (t[r] == ignore_index) {
        std::memset(dr, 0, sizeof(T) * C);
        continue;
      }
      const T* row = x + r * ld;
      const T lr = l[r];
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) dr[c] = sc * softmax_exp(row[c] - lr);
      dr[t[r]] -= sc;
    }
  });
}

}  // namespace coca::cpu
