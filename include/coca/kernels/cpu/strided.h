#pragma once
// Iteration over strided N-d index spaces for the CPU kernels: the outer dimensions are
// flattened and split across OpenMP threads; the innermost dimension is handed to the
// callback as one run so that the inner loop is a plain (vectorisable) loop.
#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "coca/tensor/tensor.h"

namespace coca::cpu {

// Strides of `t` broadcast to `shape` (stride 0 on broadcast dims); t's dims align right.
Shape broadcast_strides(const Tensor& t, const Shape& shape, const char* op);
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

template <size_t N>
struct RunGeometry {
  Shape shape;                         // coalesced
  std::array<Shape, N> strides;        // per operand, coalesced
};

// Merges adjacent dims that are contiguous with each other in every operand and drops size-1
// dims, so that most elementwise ops run as a single long inner loop.
template <size_t N>
RunGeometry<N> coalesce(const Shape& shape, const std::array<Shape, N>& strides) {
  RunGeometry<N> g;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (!g.shape.empty()) {
      bool mergeable = true;
      for (size_t k = 0; k < N; ++k)
        if (g.strides[k].back() != strides[k][d] * shape[d]) mergeable = false;
      if (mergeable) {
        g.shape.back() *= shape[d];
        for (size_t k = 0; k < N; ++k) g.strides[k].back() = strides[k][d];
        continue;
      }
    }
    g.shape.push_back(shape[d]);
    for (size_t k = 0; k < N; ++k) g.strides[k].push_back(strides[k][d]);
  }
  if (g.shape.empty()) {
    g.shape.push_back(1);
    for (size_t k = 0; k < N; ++k) g.strides[k].push_back(1);
  }
  return g;
}

// f(std::array<int64_t, N> offsets, int64_t n, std::array<int64_t, N> inner_strides)
// Work units are (outer index, chunk of the inner run): a contiguous tensor coalesces into a
// single run, which is cut into chunks so that it still spreads over the threads.
template <size_t N, typename F>
void for_each_run(const Shape& shape, const std::array<Shape, N>& strides, F&& f) {
  if (shape_numel(shape) == 0) return;
  const RunGeometry<N> g = coalesce<N>(shape, strides);
  const int64_t nd = static_cast<int64_t>(g.shape.size());
  const int64_t inner = g.shape[nd - 1];
  int64_t outer = 1;
  for (int64_t d = 0; d < nd - 1; ++d) outer *= g.shape[d];
  std::array<int64_t, N> inner_strides;
  for (size_t k = 0; k < N; ++k) inner_strides[k] = g.strides[k][nd - 1];
  constexpr int64_t kParallelElements = 32768, kChunk = 8192;
  const int64_t chunks = outer < 64 ? std::max<int64_t>(1, inner / kChunk) : 1;
  const int64_t chunk_len = (inner + chunks - 1) / chunks;
  const int64_t units = outer * chunks;
  const bool parallel = units > 1 && outer * inner >= kParallelElements;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t u = 0; u < units; ++u) {
    const int64_t o = u / chunks, c0 = (u % chunks) * chunk_len;
    const int64_t n = std::min(chunk_len, inner - c0);
    std::array<int64_t, N> off{};
    int64_t rem = o;
    for (int64_t d = nd - 2; d >= 0; --d) {
      const int64_t i = rem % g.shape[d];
      rem /= g.shape[d];
      for (size_t k = 0; k < N; ++k) off[k] += i * g.strides[k][d];
    }
    for (size_t k = 0; k < N; ++k) off[k] += c0 * inner_strides[k];
    if (n > 0) f(off, n, inner_strides);
  }
}

}  // namespace coca::cpu
