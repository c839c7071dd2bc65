#include "coca/kernels/cpu/elementwise.h"

#include <omp.h>

#include <cmath>
#include <vector>

#include "coca/kernels/cpu/fast_math.h"
#include "coca/kernels/cpu/profile.h"
#include "coca/kernels/cpu/strided.h"
#include "coca/tensor/dispatch.h"

namespace coca::cpu {

namespace {

// GELU's erf and exp: the vectorisable float32 versions (fast_math.h), libm for float64.
inline float erf_of(float x) { return fast_erf(x); }
inline double erf_of(double x) { return std::erf(x); }
inline float exp_of(float x) { return fast_exp(x); }
inline double exp_of(double x) { return std::exp(x); }

// Compute type: bf16 storage computes in float32.
template <typename T> struct compute { using type = T; };
template <> struct compute<bf16> { using type = float; };

template <typename T> inline typename compute<T>::type load(T v) { return v; }
inline float load(bf16 v) { return static_cast<float>(v); }
template <typename T, typename C> inline T store(C v) { return static_cast<T>(v); }
template <> inline bf16 store<bf16, float>(float v) { return bf16(v); }

template <typename F>
void dispatch_elementwise(DType t, const char* op, F&& f) {
  if (t == DType::bf16) return f(type_tag<bf16>{});
  dispatch_float(t, op, std::forward<F>(f));
}

template <typename T, typename F>
void binary_loop(const Tensor& a, const Tensor& b, Tensor& out, F f) {
  using C = typename compute<T>::type;
  const T* pa = a.data<T>();
  const T* pb = b.data<T>();
  T* po = out.data<T>();
  const Shape sa = broadcast_strides(a, out.shape(), "binary");
  const Shape sb = broadcast_strides(b, out.shape(), "binary");
  for_each_run<3>(out.shape(), {out.strides(), sa, sb},
                  [&](std::array<int64_t, 3> off, int64_t n, std::array<int64_t, 3> st) {
                    T* o = po + off[0];
                    const T* x = pa + off[1];
                    const T* y = pb + off[2];
                    if (st[0] == 1 && st[1] == 1 && st[2] == 1) {
                      for (int64_t i = 0; i < n; ++i) o[i] = store<T, C>(f(load(x[i]), load(y[i])));
                    } else if (st[0] == 1 && st[1] == 1 && st[2] == 0) {
                      const C yv = load(y[0]);
                      for (int64_t i = 0; i < n; ++i) o[i] = store<T, C>(f(load(x[i]), yv));
                    } else if (st[0] == 1 && st[1] == 0 && st[2] == 1) {
                      const C xv = load(x[0]);
                      for (int64_t i = 0; i < n; ++i) o[i] = store<T, C>(f(xv, load(y[i])));
                    } else {
                      for (int64_t i = 0; i < n; ++i)
                        o[i * st[0]] = store<T, C>(f(load(x[i * st[1]]), load(y[i * st[2]])));
                    }
                  });
}

template <typename T, typename F>
void unary_loop(const Tensor& a, Tensor& out, F f) {
  using C = typename compute<T>::type;
  const T* pa = a.data<T>();
  T* po = out.data<T>();
  for_each_run<2>(out.shape(), {out.strides(), a.strides()},
                  [&](std::array<int64_t, 2> off, int64_t n, std::array<int64_t, 2> st) {
                    T* o = po + off[0];
                    const T* x = pa + off[1];
                    if (st[0] == 1 && st[1] == 1) {
                      for (int64_t i = 0; i < n; ++i) o[i] = store<T, C>(f(load(x[i])));
                    } else {
                      for (int64_t i = 0; i < n; ++i) o[i * st[0]] = store<T, C>(f(load(x[i * st[1]])));
                    }
                  });
}

}  // namespace

void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) {
  static const char* const kNames[] = {"add", "sub", "mul", "div"};
  ProfileScope prof(kNames[static_cast<int>(op)]);
  dispatch_elementwise(out.dtype(), "binary", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = typename compute<T>::type;
    switch (op) {
      case BinaryOp::Add: binary_loop<T>(a, b, out, [](C x, C y) { return x + y; }); break;
      case BinaryOp::Sub: binary_loop<T>(a, b, out, [](C x, C y) { return x - y; }); break;
      case BinaryOp::Mul: binary_loop<T>(a, b, out, [](C x, C y) { return x * y; }); break;
      case BinaryOp::Div: binary_loop<T>(a, b, out, [](C x, C y) { return x / y; }); break;
    }
  });
}

void unary(UnaryOp op, const Tensor& a, Tensor& out, double s0, double s1) {
  static const char* const kNames[] = {"neg", "exp", "log", "sqrt", "rsqrt", "tanh", "gelu", "add_scalar",
                                       "mul_scalar", "pow_scalar", "clamp"};
  ProfileScope prof(kNames[static_cast<int>(op)]);
  dispatch_elementwise(out.dtype(), "unary", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = typename compute<T>::type;
    const C c0 = static_cast<C>(s0), c1 = static_cast<C>(s1);
    switch (op) {
      case UnaryOp::Neg: unary_loop<T>(a, out, [](C x) { return -x; }); break;
      case UnaryOp::Exp: unary_loop<T>(a, out, [](C x) { return std::exp(x); }); break;
      case UnaryOp::Log: unary_loop<T>(a, out, [](C x) { return std::log(x); }); break;
      case UnaryOp::Sqrt: unary_loop<T>(a, out, [](C x) { return std::sqrt(x); }); break;
      case UnaryOp::Rsqrt: unary_loop<T>(a, out, [](C x) { return C(1) / std::sqrt(x); }); break;
      case UnaryOp::Tanh: unary_loop<T>(a, out, [](C x) { return std::tanh(x); }); break;
      case UnaryOp::Gelu:
        unary_loop<T>(a, out, [](C x) { return C(0.5) * x * (C(1) + erf_of(x * C(M_SQRT1_2))); });
        break;
      case UnaryOp::AddScalar: unary_loop<T>(a, out, [c0](C x) { return x + c0; }); break;
      case UnaryOp::MulScalar: unary_loop<T>(a, out, [c0](C x) { return x * c0; }); break;
      case UnaryOp::PowScalar: unary_loop<T>(a, out, [c0](C x) { return std::pow(x, c0); }); break;
      case UnaryOp::Clamp: unary_loop<T>(a, out, [c0, c1](C x) { return x < c0 ? c0 : (x > c1 ? c1 : x); }); break;
    }
  });
}

void gelu_backward(const Tensor& x, const Tensor& grad_out, Tensor& grad_in) {
  ProfileScope prof("gelu_backward");
  dispatch_elementwise(x.dtype(), "gelu_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = typename compute<T>::type;
    binary_loop<T>(x, grad_out, grad_in, [](C v, C g) {
      const C cdf = C(0.5) * (C(1) + erf_of(v * C(M_SQRT1_2)));
      const C pdf = exp_of(C(-0.5) * v * v) * C(0.3989422804014327);  // 1/sqrt(2 pi)
      return g * (cdf + v * pdf);
    });
  });
}

namespace {

template <typename T>
inline T gelu_of(T v) {
  return T(0.5) * v * (T(1) + erf_of(v * T(M_SQRT1_2)));
}

template <typename T>
inline T gelu_grad_of(T v) {
  const T cdf = T(0.5) * (T(1) + erf_of(v * T(M_SQRT1_2)));
  const T pdf = exp_of(T(-0.5) * v * v) * T(0.3989422804014327);  // 1/sqrt(2 pi)
  return cdf + v * pdf;
}

constexpr int64_t kRowParallelElements = 32768;

}  // namespace

void bias_gelu_forward(const Tensor& h, const Tensor& bias, Tensor& y) {
  ProfileScope prof("bias_gelu");
  const int64_t C = h.size(-1), R = h.numel() / std::max<int64_t>(C, 1);
  dispatch_float(h.dtype(), "bias_gelu", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* hp = h.data<T>();
    const T* b = bias.data<T>();
    T* yp = y.data<T>();
#pragma omp parallel for schedule(static) if (R * C >= kRowParallelElements)
    for (int64_t r = 0; r < R; ++r) {
      const T* hr = hp + r * C;
      T* yr = yp + r * C;
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) yr[c] = gelu_of<T>(hr[c] + b[c]);
    }
  });
}

void bias_gelu_backward(const Tensor& h, const Tensor& bias, const Tensor& dy, Tensor& dh, Tensor& dbias) {
  ProfileScope prof("bias_gelu_backward");
  const int64_t C = h.size(-1), R = h.numel() / std::max<int64_t>(C, 1);
  dispatch_float(h.dtype(), "bias_gelu_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* hp = h.data<T>();
    const T* b = bias.data<T>();
    const T* gp = dy.data<T>();
    T* dp = dh.data<T>();
    const int nthreads = R * C >= kRowParallelElements ? omp_get_max_threads() : 1;
    std::vector<T> part(static_cast<size_t>(nthreads) * C, T(0));
#pragma omp parallel num_threads(nthreads)
    {
      T* pb = part.data() + omp_get_thread_num() * C;
#pragma omp for schedule(static)
      for (int64_t r = 0; r < R; ++r) {
        const T* hr = hp + r * C;
        const T* gr = gp + r * C;
        T* dr = dp + r * C;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) {
          const T d = gr[c] * gelu_grad_of<T>(hr[c] + b[c]);
          dr[c] = d;
          pb[c] += d;
        }
      }
    }
    T* db = dbias.data<T>();
    for (int64_t c = 0; c < C; ++c) db[c] = part[c];
    for (int t = 1; t < nthreads; ++t)
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) db[c] += part[t * C + c];
  });
}

void clamp_backward(const Tensor& x, const Tensor& grad_out, Tensor& grad_in, double lo, double hi) {
  ProfileScope prof("clamp_backward");
  dispatch_elementwise(x.dtype(), "clamp_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = typename compute<T>::type;
    const C l = static_cast<C>(lo), h = static_cast<C>(hi);
    binary_loop<T>(x, grad_out, grad_in, [l, h](C v, C g) { return (v >= l && v <= h) ? g : C(0); });
  });
}

}  // namespace coca::cpu
