#pragma once
// Host side of an emulated kernel launch: the arguments are converted to the kernel's parameter
// types (as a CUDA launch does), every thread gets its own copy, and the scheduler runs the grid.
#include <cuda_runtime.h>

#include <functional>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <vector>

namespace coca::cuda::emu {

struct LaunchInfo {
  const char* pretty = nullptr;  // __PRETTY_FUNCTION__ of kernel_tag<Kernel>: holds the kernel's name
  const void* fn = nullptr;      // the kernel (cudaFuncSetAttribute's key)
  dim3 grid, block;
  size_t smem = 0;
  cudaStream_t stream = nullptr;
  std::vector<const void*> pointers;  // pointer arguments: the buffers the kernel reads (const) or writes
  std::vector<bool> writes;           // per pointer: not pointer-to-const
};

// Runs body() once per thread of the grid; returns after the whole grid has run.
void run_kernel(const LaunchInfo& info, const std::function<void()>& body);

template <auto Kernel> const char* kernel_tag() { return __PRETTY_FUNCTION__; }

template <typename T> void collect_pointer(LaunchInfo& info, const T& v) {
  if constexpr (std::is_pointer_v<T>) {
    info.pointers.push_back(static_cast<const void*>(v));
    info.writes.push_back(!std::is_const_v<std::remove_pointer_t<T>>);
  }
}

template <typename... P, typename... A>
void launch_with(void (*kernel)(P...), LaunchInfo& info, A&&... args) {
  const std::tuple<std::decay_t<P>...> params(std::forward<A>(args)...);
  std::apply([&](const auto&... p) { (collect_pointer(info, p), ...); }, params);
  run_kernel(info, [&] {
    std::tuple<std::decay_t<P>...> mine = params;  // a thread's own parameter copy
    std::apply(kernel, std::move(mine));
  });
}

template <auto Kernel, typename... A>
void launch(dim3 grid, dim3 block, size_t smem, cudaStream_t stream, A&&... args) {
  LaunchInfo info;
  info.pretty = kernel_tag<Kernel>();
  info.fn = reinterpret_cast<const void*>(Kernel);
  info.grid = grid, info.block = block, info.smem = smem, info.stream = stream;
  launch_with(Kernel, info, std::forward<A>(args)...);
}

}  // namespace coca::cuda::emu
