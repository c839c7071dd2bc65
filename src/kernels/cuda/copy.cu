// Strided copies with dtype conversion, and fills, on the GPU.
#include "coca/kernels/cuda/copy.h"

#include "common.cuh"

namespace coca::cuda {

namespace {

template <typename D, typename S>
__global__ void copy_kernel(D* dst, const S* src, Geo<2> g) {
  COCA_KERNEL_LOOP(i, g.n) {
    int64_t off[2];
    geo_offsets<2>(g, i, off);
    using C = typename acc_type<S>::type;
    dst[off[0]] = st<D, C>(ld(src[off[1]]));
  }
}

template <typename T>
__global__ void fill_kernel(T* dst, T value, Geo<1> g) {
  COCA_KERNEL_LOOP(i, g.n) {
    int64_t off[1];
    geo_offsets<1>(g, i, off);
    dst[off[0]] = value;
  }
}

}  // namespace

void copy_strided(Tensor& dst, const Tensor& src) {
  KernelTimer timer("copy");
  COCA_CHECK(dst.device() == Device::CUDA && src.device() == Device::CUDA, "copy (CUDA): given ", src.describe(),
             " -> ", dst.describe());
  if (dst.numel() == 0) return;
  if (dst.dtype() == src.dtype() && dst.is_contiguous() && src.is_contiguous()) {
    if (dst.raw_data() != src.raw_data())
      COCA_CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), src.numel() * dtype_size(src.dtype()),
                                      cudaMemcpyDeviceToDevice, stream()));
    return;
  }
  const Geo<2> g = make_geo<2>(dst.shape(), {dst.strides(), src.strides()}, "copy");
  dispatch_all_dev(dst.dtype(), [&](auto dtag) {
    using D = typename decltype(dtag)::type;
    dispatch_all_dev(src.dtype(), [&](auto stag) {
      using S = typename decltype(stag)::type;
      launch<copy_kernel<D, S>>(grid_for(g.n), 256, 0, stream(), dptr<D>(dst), dptr<S>(src), g);
      COCA_CUDA_LAUNCH_CHECK();
    });
  });
}

void fill(Tensor& dst, double value) {
  KernelTimer timer("fill");
  if (dst.numel() == 0) return;
  const Geo<1> g = make_geo<1>(dst.shape(), {dst.strides()}, "fill");
  dispatch_all_dev(dst.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    T v;
    if constexpr (std::is_same_v<T, __nv_bfloat16>) v = __float2bfloat16(static_cast<float>(value));
    else v = static_cast<T>(value);
    launch<fill_kernel<T>>(grid_for(g.n), 256, 0, stream(), dptr<T>(dst), v, g);
    COCA_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace coca::cuda
