#pragma once
// What the rest of the code may ask of the CUDA backend without including CUDA headers.
namespace coca::cuda {

// Number of usable GPUs: 0 in a CPU-only build or where no driver/device is present.
int device_count();
// The library's build-time view: true when compiled with the CUDA backend.
bool built_with_cuda();

}  // namespace coca::cuda
