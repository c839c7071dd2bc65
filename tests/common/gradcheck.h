#pragma once
// gradcheck: compares the gradients autograd computes with central finite differences, in
// float64. A random cotangent c (seeded) is drawn for the output y = f(inputs), so what is
// checked is the full vector-Jacobian product d<c, f(x)>/dx, not just the gradient of a sum
// (a sum would hide errors that cancel across output elements, e.g. a transposed gradient).
//
//   EXPECT_TRUE(coca::testing::gradcheck([](const std::vector<Tensor>& in) { return exp(in[0]); },
//                                        {x}));
//
// Every input that requires grad is perturbed element by element through its own strides, so
// non-contiguous leaves (transposed or strided views made with strided_leaf/transposed_leaf)
// are checked as they are. Inputs must not overlap themselves (no expanded leaves).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "coca/autograd/ops.h"

namespace coca::testing {

using TensorFn = std::function<Tensor(const std::vector<Tensor>&)>;

struct GradcheckOptions {
  double eps = 1e-6;   // finite-difference step
  // An element passes when |analytic - numeric| <= atol + rtol * |numeric|. With float64 and
  // eps = 1e-6 the central difference is accurate to ~1e-9 on the O(1) values used here.
  double atol = 1e-6;
  double rtol = 1e-5;
  uint64_t seed = 1234;  // for the cotangent
};

// Multi-index of logical (row-major) position `flat` in `shape`.
inline Shape unravel_index(int64_t flat, const Shape& shape) {
  Shape idx(shape.size());
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    idx[d] = flat % shape[d];
    flat /= shape[d];
  }
  return idx;
}

// Element offset (from data<T>()) of logical position `flat` of t, through its strides.
inline int64_t strided_offset(const Tensor& t, int64_t flat) {
  const Shape idx = unravel_index(flat, t.shape());
  int64_t off = 0;
  for (size_t d = 0; d < idx.size(); ++d) off += idx[d] * t.strides()[d];
  return off;
}

// A leaf with t's values whose every stride is doubled (storage [..., 2], element 1 taken).
inline Tensor strided_leaf(const Tensor& t, bool requires_grad = true) {
  Shape buf_shape = t.shape();
  buf_shape.push_back(2);
  Tensor buf = Tensor::zeros(buf_shape, t.dtype());
  Tensor view = buf.select(-1, 1);
  view.copy_(t.detach());
  if (requires_grad) view.set_requires_grad(true);
  return view;
}

// A leaf with t's values stored with its last two dims swapped (a .t() view of a buffer).
inline Tensor transposed_leaf(const Tensor& t, bool requires_grad = true) {
  Tensor buf = t.detach().transpose(-2, -1).clone();  // clone: never alias t
  Tensor view = buf.detach().transpose(-2, -1);
  if (requires_grad) view.set_requires_grad(true);
  return view;
}

inline double dot_with(const Tensor& y, const std::vector<double>& c) {
  const std::vector<double> v = y.to_double_vector();
  double s = 0;
  for (size_t i = 0; i < v.size(); ++i) s += v[i] * c[i];
  return s;
}

inline ::testing::AssertionResult gradcheck(const TensorFn& f, const std::vector<Tensor>& inputs,
                                            const GradcheckOptions& opt = {}) {
  int64_t n_checked_inputs = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined() || !inputs[i].requires_grad()) continue;
    if (inputs[i].dtype() != DType::f64)
      return ::testing::AssertionFailure() << "gradcheck: input " << i << " is " << inputs[i].describe()
                                           << "; gradients are checked in float64";
    if (!inputs[i].is_leaf())
      return ::testing::AssertionFailure() << "gradcheck: input " << i << " is not a leaf";
    Tensor(inputs[i]).zero_grad();  // a handle copy shares the impl
    ++n_checked_inputs;
  }
  if (n_checked_inputs == 0) return ::testing::AssertionFailure() << "gradcheck: no input requires grad";

  Tensor y = f(inputs);
  if (!y.requires_grad()) return ::testing::AssertionFailure() << "gradcheck: output does not require grad";
  Generator gen(opt.seed);
  Tensor cot = Tensor::randn(y.shape(), gen, DType::f64);
  const std::vector<double> c = cot.to_double_vector();
  y.backward(cot);

  auto objective = [&]() {
    NoGradGuard no_grad;
    return dot_with(f(inputs), c);
  };

  double worst_ratio = -1;
  std::ostringstream worst;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& x = inputs[i];
    if (!x.defined() || !x.requires_grad()) continue;
    const Tensor g = x.grad();
    if (g.defined() && g.shape() != x.shape())
      return ::testing::AssertionFailure() << "gradcheck: gradient of input " << i << " is " << g.describe()
                                           << " but the input is " << x.describe();
    const std::vector<double> analytic = g.defined() ? g.to_double_vector() : std::vector<double>(x.numel(), 0.0);
    double* base = x.data<double>();
    for (int64_t e = 0; e < x.numel(); ++e) {
      const int64_t off = strided_offset(x, e);
      const double keep = base[off];
      base[off] = keep + opt.eps;
      const double fp = objective();
      base[off] = keep - opt.eps;
      const double fm = objective();
      base[off] = keep;
      const double numeric = (fp - fm) / (2 * opt.eps);
      const double err = std::fabs(numeric - analytic[e]);
      const double ratio = err / (opt.atol + opt.rtol * std::fabs(numeric));
      if (!(ratio <= worst_ratio) || std::isnan(analytic[e])) {
        worst_ratio = std::isnan(analytic[e]) ? 1e300 : ratio;
        worst.str("");
        worst << "input " << i << " " << x.describe() << " at " << shape_str(unravel_index(e, x.shape()))
              << ": analytic " << analytic[e] << ", numeric " << numeric << ", |diff| " << err << " > tolerance "
              << opt.atol + opt.rtol * std::fabs(numeric) << (g.defined() ? "" : " (no gradient reached it)");
      }
    }
  }
  if (worst_ratio > 1.0) return ::testing::AssertionFailure() << "gradcheck failed; worst element: " << worst.str();
  return ::testing::AssertionSuccess();
}

}  // namespace coca::testing
