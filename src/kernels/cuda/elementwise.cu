// Broadcasting binary ops, scalar ops and pointwise functions on the GPU (float32, float64,
// bf16 computed in float32), one grid-stride kernel per operand count.
#include "coca/kernels/cuda/elementwise.h"

#include "common.cuh"

namespace coca::cuda {

namespace {

template <typename C>
__device__ __forceinline__ C binary_fn(BinaryOp op, C x, C y) {
  switch (op) {
    case BinaryOp::Add: return x + y;
    case BinaryOp::Sub: return x - y;
    case BinaryOp::Mul: return x * y;
    case BinaryOp::Div: return x / y;
  }
  return C(0);
}

template <typename C>
__device__ __forceinline__ C unary_fn(UnaryOp op, C x, C c0, C c1) {
  switch (op) {
    case UnaryOp::Neg: return -x;
    case UnaryOp::Exp: return exp(x);
    case UnaryOp::Log: return log(x);
    case UnaryOp::Sqrt: return sqrt(x);
    case UnaryOp::Rsqrt: return C(1) / sqrt(x);
    case UnaryOp::Tanh: return tanh(x);
    case UnaryOp::Gelu: return C(0.5) * x * (C(1) + erf(x * C(0.70710678118654752440)));
    case UnaryOp::AddScalar: return x + c0;
    case UnaryOp::MulScalar: return x * c0;
    case UnaryOp::PowScalar: return pow(x, c0);
    case UnaryOp::Clamp: return x < c0 ? c0 : (x > c1 ? c1 : x);
  }
  return C(0);
}

// kind 0: binary op; 1: gelu backward (a = x, b = grad); 2: clamp backward.
template <typename T>
__global__ void binary_kernel(int kind, BinaryOp op, const T* a, const T* b, T* out, Geo<3> g,
                              typename acc_type<T>::type lo, typename acc_type<T>::type hi) {
  using C = typename acc_type<T>::type;
  COCA_KERNEL_LOOP(i, g.n) {
    int64_t off[3];
    geo_offsets<3>(g, i, off);
    const C x = ld(a[off[1]]), y = ld(b[off[2]]);
    C r;
    if (kind == 0) {
      r = binary_fn<C>(op, x, y);
    } else if (kind == 1) {
      const C cdf = C(0.5) * (C(1) + erf(x * C(0.70710678118654752440)));
      const C pdf = exp(C(-0.5) * x * x) * C(0.3989422804014327);
      r = y * (cdf + x * pdf);
    } else {
      r = (x >= lo && x <= hi) ? y : C(0);
    }
    out[off[0]] = st<T, C>(r);
  }
}

template <typename T>
__global__ void unary_kernel(UnaryOp op, const T* a, T* out, Geo<2> g, typename acc_type<T>::type c0,
                             typename acc_type<T>::type c1) {
  using C = typename acc_type<T>::type;
  COCA_KERNEL_LOOP(i, g.n) {
    int64_t off[2];
    geo_offsets<2>(g, i, off);
    out[off[0]] = st<T, C>(unary_fn<C>(op, ld(a[off[1]]), c0, c1));
  }
}

void launch_binary(int kind, BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out, double lo, double hi,
                   const char* name) {
  if (out.numel() == 0) return;
  const Shape sa = cpu::broadcast_strides(a, out.shape(), name);
  const Shape sb = cpu::broadcast_strides(b, out.shape(), name);
  const Geo<3> g = make_geo<3>(out.shape(), {out.strides(), sa, sb}, name);
  dispatch_float_dev<true>(out.dtype(), name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = typename acc_type<T>::type;
    launch<binary_kernel<T>>(grid_for(g.n), 256, 0, stream(), kind, op, dptr<T>(a), dptr<T>(b), dptr<T>(out), g,
                                                          static_cast<C>(lo), static_cast<C>(hi));
    COCA_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace

void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) {
  KernelTimer timer("binary");
  launch_binary(0, op, a, b, out, 0, 0, "binary");
}

void unary(UnaryOp op, const Tensor& a, Tensor& out, double s0, double s1) {
  KernelTimer timer("unary");
  if (out.numel() == 0) return;
  const Geo<2> g = make_geo<2>(out.shape(), {out.strides(), a.strides()}, "unary");
  dispatch_float_dev<true>(out.dtype(), "unary", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = typename acc_type<T>::type;
    launch<unary_kernel<T>>(grid_for(g.n), 256, 0, stream(), op, dptr<T>(a), dptr<T>(out), g, static_cast<C>(s0),
                                                         static_cast<C>(s1));
    COCA_CUDA_LAUNCH_CHECK();
  });
}

void gelu_backward(const Tensor& x, const Tensor& grad_out, Tensor& grad_in) {
  KernelTimer timer("gelu_backward");
  launch_binary(1, BinaryOp::Add, x, grad_out, grad_in, 0, 0, "gelu_backward");
}

void clamp_backward(const Tensor& x, const Tensor& grad_out, Tensor& grad_in, double lo, double hi) {
  KernelTimer timer("clamp_backward");
  launch_binary(2, BinaryOp::Add, x, grad_out, grad_in, lo, hi, "clamp_backward");
}

}  // namespace coca::cuda
