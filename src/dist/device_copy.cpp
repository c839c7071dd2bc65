#include "device_copy.h"

#include <cstring>

#ifdef COCA_WITH_CUDA
#include "coca/kernels/cuda/context.h"
#endif

namespace coca::dist::detail {
namespace {

char* at(const Tensor& t, int64_t offset) { return static_cast<char*>(t.raw_data()) + offset * dtype_size(t.dtype()); }

void copy_bytes(void* dst, Device dd, const void* src, Device sd, size_t n) {
  if (n == 0) return;
  if (dd == Device::CPU && sd == Device::CPU) {
    if (dst != src) std::memcpy(dst, src, n);
    return;
  }
#ifdef COCA_WITH_CUDA
  if (dst == src) return;
  // On the backend's stream, where the kernels that wrote the gradient ran (a legacy-stream
  // cudaMemcpy is not ordered after that non-blocking stream); the collectives wait for this
  // stream with an event. With a host side, wait: the host reads dst, or may free src at once
  // (a pinned source would otherwise still be in flight).
  cudaStream_t s = cuda::stream();
  COCA_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDefault, s));
  if (dd == Device::CPU || sd == Device::CPU) COCA_CUDA_CHECK(cudaStreamSynchronize(s));
#else
  throw Error("gradient copy: CUDA tensors need a build with the CUDA backend");
#endif
}

void check_pair(const char* what, const Tensor& flat, int64_t offset, const Tensor& t) {
  COCA_CHECK(t.is_contiguous() && flat.dtype() == t.dtype() && offset >= 0 && offset + t.numel() <= flat.numel(),
             what, ": tensor ", t.describe(), " does not fit bucket ", flat.describe(), " at offset ", offset);
}

}  // namespace

void copy_into(const Tensor& flat, int64_t offset, const Tensor& src) {
  check_pair("bucket copy", flat, offset, src);
  copy_bytes(at(flat, offset), flat.device(), src.raw_data(), src.device(), src.numel() * dtype_size(src.dtype()));
}

void copy_out(const Tensor& dst, const Tensor& flat, int64_t offset) {
  check_pair("bucket copy", flat, offset, dst);
  copy_bytes(dst.raw_data(), dst.device(), at(flat, offset), flat.device(), dst.numel() * dtype_size(dst.dtype()));
}

void zero_range(const Tensor& flat, int64_t offset, int64_t numel) {
  const size_t n = numel * dtype_size(flat.dtype());
  if (n == 0) return;
  if (flat.device() == Device::CPU) {
    std::memset(at(flat, offset), 0, n);
    return;
  }
#ifdef COCA_WITH_CUDA
  // Ordered with the kernels and copies on the backend's stream; no host wait needed.
  COCA_CUDA_CHECK(cudaMemsetAsync(at(flat, offset), 0, n, cuda::stream()));
#else
  throw Error("gradient bucket: CUDA tensors need a build with the CUDA backend");
#endif
}

Tensor zeros_on(const Shape& shape, DType dtype, Device device) {
  Tensor t = Tensor::empty(shape, dtype, device);
  zero_range(t, 0, t.numel());
  return t;
}

}  // namespace coca::dist::detail
