#pragma once
// Every kernel launch goes through launch<kernel>(grid, block, smem, stream, args...): with nvcc
// it is kernel<<<grid, block, smem, stream>>>(args...); in the emulated build (COCA_CUDA=EMU,
// the .cu files compiled by the host compiler) the emulator runs the grid on the CPU
// (include/coca/kernels/cuda/emu/). The kernel is a template argument so that the emulator
// knows its name (launch counts, failure reports) without any change to the kernel.
#include <cuda_runtime.h>

#include <utility>

#ifdef COCA_CUDA_EMU
#include "coca/kernels/cuda/emu/device.h"
#include "coca/kernels/cuda/emu/launch.h"
#else
// Shared memory in kernels is declared with these (the emulator gives each block its own copy):
// COCA_SHARED(type, name, count) is `__shared__ type name[count]`, COCA_DYNAMIC_SHARED(type,
// name, alignment) is `extern __shared__ __align__(alignment) type name[]`.
#define COCA_SHARED(type, name, count) __shared__ type name[count]
#define COCA_DYNAMIC_SHARED(type, name, align) extern __shared__ __align__(align) type name[]
#endif

namespace coca::cuda {

template <auto Kernel, typename... Args>
void launch(dim3 grid, dim3 block, size_t smem, cudaStream_t stream, Args&&... args) {
#ifdef COCA_CUDA_EMU
  emu::launch<Kernel>(grid, block, smem, stream, std::forward<Args>(args)...);
#else
  Kernel<<<grid, block, smem, stream>>>(std::forward<Args>(args)...);
#endif
}

}  // namespace coca::cuda
