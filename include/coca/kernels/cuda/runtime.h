#pragma once
// What the rest of the code may ask of the CUDA backend without including CUDA headers.
#include <cstddef>
#include <cstdint>

namespace coca::cuda {

// Number of usable GPUs: 0 in a CPU-only build or where no driver/device is present.
int device_count();
// The library's build-time view: true when compiled with the CUDA backend.
bool built_with_cuda();
// Chooses the GPU this process runs on (cudaSetDevice); call before any other CUDA work
// (throws when the backend already runs on another GPU, or `device` is not visible).
void set_device(int device);
int current_device();
// "NVIDIA H100 80GB HBM3" (or "none").
const char* device_name();

// Copies between host and device memory on the library's stream; `kind` 0 host->device,
// 1 device->host, 2 device->device. Device->host waits for the copy (the result is then readable).
void memcpy(void* dst, const void* src, size_t nbytes, int kind);
// Waits for all work queued on the library's stream.
void synchronize();

// Caching allocator statistics: bytes held from the driver, bytes handed out, driver calls.
struct AllocatorStats {
  size_t reserved = 0, allocated = 0;
  int64_t driver_allocs = 0, cache_hits = 0;
};
AllocatorStats allocator_stats();
// Returns every cached, unused block to the driver.
void empty_cache();

// Matmul precision on the GPU. Float32 parity (the default) keeps TF32 off; Bf16 runs float32
// matmuls with bf16 operands and float32 accumulation (the amp_bf16 mode).
enum class MatmulPrecision { Float32, Tf32, Bf16 };
void set_matmul_precision(MatmulPrecision p);
MatmulPrecision matmul_precision();

// Kernel-family timing with CUDA events (for finding where a step's GPU time goes). While on,
// every kernel entry point of the backend records a pair of events; profile_report()
// synchronises and prints milliseconds per family, then clears.
void set_profiling(bool on);
void profile_report();

}  // namespace coca::cuda
