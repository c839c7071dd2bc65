#include "coca/kernels/cpu/reduce.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "coca/kernels/cpu/profile.h"
#include "coca/tensor/dispatch.h"

namespace coca::cpu {

void sum_middle(const Tensor& in, int64_t outer, int64_t red, int64_t inner, Tensor& out) {
  ProfileScope prof("sum");
  dispatch_float(in.dtype(), "sum", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* x = in.data<T>();
    T* y = out.data<T>();
    if (inner == 1 && outer == 1 && red >= 65536) {
      // One long sum: fixed-size chunks summed in parallel, then added in chunk order, so the
      // result does not depend on the number of threads.
      const int64_t chunk = 16384, nchunks = (red + chunk - 1) / chunk;
      std::vector<T> part(nchunks);
#pragma omp parallel for schedule(static)
      for (int64_t c = 0; c < nchunks; ++c) {
        const T* p = x + c * chunk;
        const int64_t n = std::min(chunk, red - c * chunk);
        T acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t r = 0; r < n; ++r) acc += p[r];
        part[c] = acc;
      }
      T total = 0;
      for (T v : part) total += v;
      y[0] = total;
      return;
    }
    if (inner == 1) {
#pragma omp parallel for schedule(static) if (outer * red >= 32768)
      for (int64_t o = 0; o < outer; ++o) {
        const T* row = x + o * red;
        T acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t r = 0; r < red; ++r) acc += row[r];
        y[o] = acc;
      }
      return;
    }
    // Column sums: split the inner axis into blocks so threads never share an output element.
    const int64_t block = 256;
    const int64_t nblocks = (inner + block - 1) / block;
#pragma omp parallel for collapse(2) schedule(static) if (outer * red * inner >= 32768)
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t b = 0; b < nblocks; ++b) {
        const int64_t i0 = b * block, i1 = std::min(inner, i0 + block);
        T* yo = y + o * inner;
        for (int64_t i = i0; i < i1; ++i) yo[i] = 0;
        for (int64_t r = 0; r < red; ++r) {
          const T* row = x + (o * red + r) * inner;
#pragma omp simd
          for (int64_t i = i0; i < i1; ++i) yo[i] += row[i];
        }
      }
    }
  });
}

void max_last(const Tensor& in, int64_t rows, int64_t cols, Tensor& values, Tensor& index) {
  ProfileScope prof("max");
  dispatch_float(in.dtype(), "max", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* x = in.data<T>();
    T* v = values.data<T>();
    int32_t* idx = index.data<int32_t>();
#pragma omp parallel for schedule(static) if (rows * cols >= 32768)
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = x + r * cols;
      int64_t best = 0;
      for (int64_t c = 1; c < cols; ++c)
        if (row[c] > row[best]) best = c;
      v[r] = row[best];
      idx[r] = static_cast<int32_t>(best);
    }
  });
}

void max_last_backward(const Tensor& g, const Tensor& index, int64_t rows, int64_t cols, Tensor& out) {
  ProfileScope prof("max_backward");
  dispatch_float(out.dtype(), "max_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* gp = g.data<T>();
    const int32_t* idx = index.data<int32_t>();
    T* o = out.data<T>();
#pragma omp parallel for schedule(static) if (rows * cols >= 32768)
    for (int64_t r = 0; r < rows; ++r) {
      std::memset(o + r * cols, 0, sizeof(T) * cols);
      o[r * cols + idx[r]] = gp[r];
    }
  });
}

}  // namespace coca::cpu
