// Broadcasting binary ops, scalar ops and pointwise functions, each with its backward.
#include "coca/kernels/cpu/elementwise.h"
#ifdef COCA_WITH_CUDA
#include "coca/kernels/cuda/elementwise.h"
#endif

#include "common.h"
#include "coca/kernels/cpu/strided.h"

namespace coca {

namespace {

void check_elementwise(const char* op, const Tensor& a) {
  detail::check_defined(op, a, "input");
  detail::check_cpu(op, {&a});
  COCA_CHECK(is_floating(a.dtype()), op, ": ", a.describe(), " is not a floating-point tensor");
}

Tensor binary_forward(kernels::BinaryOp kind, const char* op, const Tensor& a, const Tensor& b) {
  check_elementwise(op, a);
  check_elementwise(op, b);
  detail::check_same_dtype(op, a, b);
  Tensor out = Tensor::empty(cpu::broadcast_shapes(a.shape(), b.shape(), op), a.dtype(), a.device());
  COCA_DISPATCH_DEVICE(a, binary(kind, a, b, out));
  return out;
}

Tensor unary_forward(kernels::UnaryOp kind, const char* op, const Tensor& a, double s0 = 0, double s1 = 0) {
  check_elementwise(op, a);
  Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());
  COCA_DISPATCH_DEVICE(a, unary(kind, a, out, s0, s1));
  return out;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(kernels::BinaryOp::Add, "add", a, b);
  record(out, "add", {a, b}, [sa = a.shape(), sb = b.shape()](const Tensor& g) {
    return std::vector<Tensor>{sum_to_shape(g, sa), sum_to_shape(g, sb)};
  });
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(kernels::BinaryOp::Sub, "sub", a, b);
  record(out, "sub", {a, b}, [sa = a.shape(), sb = b.shape()](const Tensor& g) {
    return std::vector<Tensor>{sum_to_shape(g, sa), sum_to_shape(neg(g), sb)};
  });
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(kernels::BinaryOp::Mul, "mul", a, b);
  const bool ga = a.requires_grad(), gb = b.requires_grad();
  // Each input's gradient needs the other input only.
  record(out, "mul", {a, b}, [sa = a.shape(), sb = b.shape(), a_saved = gb ? a.detach() : Tensor(),
                              b_saved = ga ? b.detach() : Tensor()](const Tensor& g) {
    return std::vector<Tensor>{b_saved.defined() ? sum_to_shape(mul(g, b_saved), sa) : Tensor(),
                               a_saved.defined() ? sum_to_shape(mul(g, a_saved), sb) : Tensor()};
  });
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(kernels::BinaryOp::Div, "div", a, b);
  const bool gb = b.requires_grad();
  record(out, "div", {a, b}, [sa = a.shape(), sb = b.shape(), b_saved = b.detach(),
                              out_saved = gb ? out.detach() : Tensor()](const Tensor& g) {
    Tensor ga = div(g, b_saved);  // d(a/b)/da = 1/b
    Tensor gbv = out_saved.defined() ? sum_to_shape(neg(mul(ga, out_saved)), sb) : Tensor();  // -g a / b^2
    return std::vector<Tensor>{sum_to_shape(ga, sa), gbv};
  });
  return out;
}

Tensor add_scalar(const Tensor& a, double s) {
  Tensor out = unary_forward(kernels::UnaryOp::AddScalar, "add_scalar", a, s);
  record(out, "add_scalar", {a}, [](const Tensor& g) { return std::vector<Tensor>{g}; });
  return out;
}

Tensor mul_scalar(const Tensor& a, double s) {
  Tensor out = unary_forward(kernels::UnaryOp::MulScalar, "mul_scalar", a, s);
  record(out, "mul_scalar", {a}, [s](const Tensor& g) { return std::vector<Tensor>{mul_scalar(g, s)}; });
  return out;
}

Tensor pow_scalar(const Tensor& a, double p) {
  Tensor out = unary_forward(kernels::UnaryOp::PowScalar, "pow_scalar", a, p);
  record(out, "pow_scalar", {a}, [p, x = a.detach()](const Tensor& g) {
    // x^0 is constant: its gradient is 0 even at x = 0, where p * x^(p-1) would be 0 * inf.
    if (p == 0.0) return std::vector<Tensor>{Tensor::zeros(x.shape(), g.dtype())};
    return std::vector<Tensor>{mul(g, mul_scalar(pow_scalar(x, p - 1), p))};
  });
  return out;
}

Tensor neg(const Tensor& a) {
  Tensor out = unary_forward(kernels::UnaryOp::Neg, "neg", a);
  record(out, "neg", {a}, [](const Tensor& g) { return std::vector<Tensor>{neg(g)}; });
  return out;
}

Tensor exp(const Tensor& a) {
  Tensor out = unary_forward(kernels::UnaryOp::Exp, "exp", a);
  record(out, "exp", {a}, [y = out.detach()](const Tensor& g) { return std::vector<Tensor>{mul(g, y)}; });
  return out;
}

Tensor log(const Tensor& a) {
  Tensor out = unary_forward(kernels::UnaryOp::Log, "log", a);
  record(out, "log", {a}, [x = a.detach()](const Tensor& g) { return std::vector<Tensor>{div(g, x)}; });
  return out;
}

Tensor sqrt(const Tensor& a) {
  Tensor out = unary_forward(kernels::UnaryOp::Sqrt, "sqrt", a);
  record(out, "sqrt", {a}, [y = out.detach()](const Tensor& g) {
    return std::vector<Tensor>{mul_scalar(div(g, y), 0.5)};
  });
  return out;
}

Tensor rsqrt(const Tensor& a) {
  Tensor out = unary_forward(kernels::UnaryOp::Rsqrt, "rsqrt", a);
  record(out, "rsqrt", {a}, [y = out.detach()](const Tensor& g) {
    return std::vector<Tensor>{mul(g, mul_scalar(pow_scalar(y, 3), -0.5))};  // d x^-1/2 = -1/2 x^-3/2
  });
  return out;
}

Tensor tanh(const Tensor& a) {
  Tensor out = unary_forward(kernels::UnaryOp::Tanh, "tanh", a);
  record(out, "tanh", {a}, [y = out.detach()](const Tensor& g) {
    return std::vector<Tensor>{mul(g, add_scalar(neg(mul(y, y)), 1.0))};
  });
  return out;
}

Tensor gelu(const Tensor& a) {
  Tensor out = unary_forward(kernels::UnaryOp::Gelu, "gelu", a);
  record(out, "gelu", {a}, [x = a.detach()](const Tensor& g) {
    Tensor gi = Tensor::empty(x.shape(), x.dtype(), x.device());
    COCA_DISPATCH_DEVICE(x, gelu_backward(x, g, gi));
    return std::vector<Tensor>{gi};
  });
  return out;
}

Tensor bias_gelu(const Tensor& h, const Tensor& bias) {
  check_elementwise("bias_gelu", h);
  detail::check_defined("bias_gelu", bias, "bias");
  detail::check_cpu("bias_gelu", {&h, &bias});
  detail::check_float("bias_gelu", h);
  detail::check_same_dtype("bias_gelu", h, bias);
  COCA_CHECK(h.dim() >= 1 && bias.dim() == 1 && bias.size(0) == h.size(-1), "bias_gelu: bias ", bias.describe(),
             " does not match the last dimension of ", h.describe());
  if (h.device() != Device::CPU) return gelu(add(h, bias));  // no fused kernel there
  Tensor hc = h.detach().contiguous(), bc = bias.detach().contiguous();
  Tensor out = Tensor::empty(h.shape(), h.dtype(), h.device());
  cpu::bias_gelu_forward(hc, bc, out);
  record(out, "bias_gelu", {h, bias}, [hc, bc, want_b = bias.requires_grad()](const Tensor& g) {
    Tensor gc = g.contiguous();
    Tensor dh = Tensor::empty(hc.shape(), hc.dtype(), hc.device());
    // The column sums cost nothing extra in the same pass; dropped when bias needs no gradient.
    Tensor db = Tensor::empty(bc.shape(), bc.dtype(), bc.device());
    cpu::bias_gelu_backward(hc, bc, gc, dh, db);
    return std::vector<Tensor>{dh, want_b ? db : Tensor()};
  });
  return out;
}

Tensor clamp(const Tensor& a, double lo, double hi) {
  COCA_CHECK(lo <= hi, "clamp: lower bound ", lo, " exceeds upper bound ", hi);
  Tensor out = unary_forward(kernels::UnaryOp::Clamp, "clamp", a, lo, hi);
  record(out, "clamp", {a}, [x = a.detach(), lo, hi](const Tensor& g) {
    Tensor gi = Tensor::empty(x.shape(), x.dtype(), x.device());
    COCA_DISPATCH_DEVICE(x, clamp_backward(x, g, gi, lo, hi));
    return std::vector<Tensor>{gi};
  });
  return out;
}

}  // namespace coca
