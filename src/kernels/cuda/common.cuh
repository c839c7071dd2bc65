#pragma once
// Helpers shared by the CUDA kernel families: dtype dispatch to device types, strided index
// geometry (coalesced on the host, decoded per element on the device), warp reductions.
#include <cuda_bf16.h>

#include <array>
#include <limits>

#include "coca/kernels/cpu/strided.h"
#include "coca/kernels/cuda/context.h"
#include "coca/tensor/dispatch.h"
#include "launch.cuh"

namespace coca::cuda {

template <typename T> struct dev_type { using type = T; };
template <> struct dev_type<bf16> { using type = __nv_bfloat16; };
template <typename T> struct acc_type { using type = T; };
template <> struct acc_type<__nv_bfloat16> { using type = float; };
template <> struct acc_type<int32_t> { using type = double; };
template <> struct acc_type<uint8_t> { using type = double; };

template <typename T> __device__ __forceinline__ typename acc_type<T>::type ld(T v) { return v; }
__device__ __forceinline__ float ld(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T, typename C> __device__ __forceinline__ T st(C v) { return static_cast<T>(v); }
template <> __device__ __forceinline__ __nv_bfloat16 st<__nv_bfloat16, float>(float v) { return __float2bfloat16(v); }
template <> __device__ __forceinline__ __nv_bfloat16 st<__nv_bfloat16, double>(double v) {
  return __float2bfloat16(static_cast<float>(v));
}

// f(type_tag<DeviceT>) for float32/float64 (and bf16 where `with_bf16`).
template <bool WithBf16 = false, typename F>
void dispatch_float_dev(DType t, const char* op, F&& f) {
  if (t == DType::f32) return f(type_tag<float>{});
  if (t == DType::f64) return f(type_tag<double>{});
  if constexpr (WithBf16) {
    if (t == DType::bf16) return f(type_tag<__nv_bfloat16>{});
  }
  throw Error(str_cat(op, " (CUDA): dtype ", dtype_name(t), " is not supported"));
}

template <typename F>
void dispatch_all_dev(DType t, F&& f) {
  switch (t) {
    case DType::f32: return f(type_tag<float>{});
    case DType::f64: return f(type_tag<double>{});
    case DType::bf16: return f(type_tag<__nv_bfloat16>{});
    case DType::i32: return f(type_tag<int32_t>{});
    case DType::u8: return f(type_tag<uint8_t>{});
  }
}

template <typename T> T* dptr(const Tensor& t) { return static_cast<T*>(t.raw_data()); }

constexpr int kMaxDims = 10;

// N operands over one index space; dims coalesced on the host.
template <int N>
struct Geo {
  int nd = 0;
  int64_t n = 0;
  bool contiguous = false;  // every operand dense and in order: offset == linear index
  int64_t shape[kMaxDims];
  int64_t stride[N][kMaxDims];
};

template <int N>
Geo<N> make_geo(const Shape& shape, const std::array<Shape, N>& strides, const char* op) {
  Geo<N> g;
  g.n = shape_numel(shape);
  const auto c = cpu::coalesce<N>(shape, strides);
  COCA_CHECK(c.shape.size() <= kMaxDims, op, " (CUDA): more than ", kMaxDims, " non-mergeable dimensions");
  g.nd = static_cast<int>(c.shape.size());
  g.contiguous = g.nd == 1;
  for (int d = 0; d < g.nd; ++d) {
    g.shape[d] = c.shape[d];
    for (int k = 0; k < N; ++k) {
      g.stride[k][d] = c.strides[k][d];
      if (g.nd == 1 && c.strides[k][d] != 1) g.contiguous = false;
    }
  }
  return g;
}

template <int N>
__device__ __forceinline__ void geo_offsets(const Geo<N>& g, int64_t i, int64_t (&off)[N]) {
  if (g.contiguous) {
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] = i;
    return;
  }
#pragma unroll
  for (int k = 0; k < N; ++k) off[k] = 0;
  for (int d = g.nd - 1; d >= 0; --d) {
    const int64_t idx = i % g.shape[d];
    i /= g.shape[d];
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] += idx * g.stride[k][d];
  }
}

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
template <typename T>
__device__ __forceinline__ T warp_max(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

template <typename T> __device__ __forceinline__ T neg_inf() { return -std::numeric_limits<T>::infinity(); }

// Grid-stride loop over [0, n).
#define COCA_KERNEL_LOOP(i, n) \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

inline unsigned grid_for(int64_t n, int threads = 256) {
  const int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 65535 * 8 ? 65535 * 8 : b));
}

}  // namespace coca::cuda
