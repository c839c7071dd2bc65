#pragma once
// Byte copies between a parameter's gradient and a bucket's flat buffer, whichever devices they
// live on (CPU gradients with an NCCL communicator are staged through cudaMemcpy). GPU copies and
// clears run on the CUDA backend's stream, in order with its kernels; a copy with a host side
// returns when the host may use (or free) its buffer.
#include "coca/tensor/tensor.h"

namespace coca::dist::detail {

// flat[offset : offset + src.numel()] <- src (contiguous, same dtype).
void copy_into(const Tensor& flat, int64_t offset, const Tensor& src);
// dst (contiguous, same dtype) <- flat[offset : offset + dst.numel()].
void copy_out(const Tensor& dst, const Tensor& flat, int64_t offset);
void zero_range(const Tensor& flat, int64_t offset, int64_t numel);
Tensor zeros_on(const Shape& shape, DType dtype, Device device);

}  // namespace coca::dist::detail
