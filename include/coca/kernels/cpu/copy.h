#pragma once
#include "coca/kernels/cpu/profile.h"
#include "coca/kernels/cpu/strided.h"

namespace coca::cpu {

// dst[i] = convert(src[i]) for every logical index; any strides, any dtypes, same shape.
void copy_strided(Tensor& dst, const Tensor& src);

template <typename T>
void fill_strided(Tensor& dst, T value) {
  ProfileScope prof("fill");
  T* p = dst.data<T>();
  for_each_run<1>(dst.shape(), {dst.strides()}, [&](std::array<int64_t, 1> off, int64_t n, std::array<int64_t, 1> st) {
    T* q = p + off[0];
    for (int64_t i = 0; i < n; ++i) q[i * st[0]] = value;
  });
}

}  // namespace coca::cpu
