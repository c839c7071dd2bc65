// Broadcasting binary ops, scalar ops and pointwise functions: forward against plain loops in
// float32 and float64, gradients against finite differences in float64.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "coca/autograd/ops.h"
#include "common/gradcheck.h"
#include "common/test_util.h"

using namespace coca;
using namespace coca::testing;
using In = std::vector<Tensor>;

namespace {

struct BinaryCase {
  const char* name;
  std::function<Tensor(const Tensor&, const Tensor&)> op;
  std::function<double(double, double)> ref;
};

const std::vector<BinaryCase>& binary_cases() {
  static const std::vector<BinaryCase> cases = {
      {"add", [](const Tensor& a, const Tensor& b) { return add(a, b); }, [](double x, double y) { return x + y; }},
      {"sub", [](const Tensor& a, const Tensor& b) { return sub(a, b); }, [](double x, double y) { return x - y; }},
      {"mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); }, [](double x, double y) { return x * y; }},
      {"div", [](const Tensor& a, const Tensor& b) { return div(a, b); }, [](double x, double y) { return x / y; }},
  };
  return cases;
}

// Broadcast pairs; `b` values are kept away from 0 so that div is well conditioned.
const std::vector<std::pair<Shape, Shape>> kBroadcastShapes = {
    {{3, 4}, {3, 4}}, {{2, 3, 4}, {4}}, {{2, 1, 4}, {3, 1}}, {{5, 1}, {1, 6}}, {{}, {2, 3}}, {{2, 3}, {}},
    {{4, 1, 3}, {1, 5, 1}},
};

Tensor away_from_zero(const Shape& s, DType dt, Generator& gen) {
  // |v| in [0.5, 2] with a random sign.
  Tensor mag = uniform(s, dt, gen, 0.5, 2.0);
  Tensor sign = uniform(s, dt, gen, -1.0, 1.0);
  std::vector<double> m = mag.to_double_vector(), sg = sign.to_double_vector();
  for (size_t i = 0; i < m.size(); ++i) m[i] = sg[i] < 0 ? -m[i] : m[i];
  return Tensor::from_vector<double>(m, s).to(dt);
}

std::vector<double> binary_reference(const BinaryCase& c, const Tensor& a, const Tensor& b, const Shape& out) {
  const auto va = a.to_double_vector(), vb = b.to_double_vector();
  std::vector<double> r(shape_numel(out));
  for (int64_t i = 0; i < static_cast<int64_t>(r.size()); ++i) {
    const Shape idx = unravel_index(i, out);
    r[i] = c.ref(va[broadcast_source(idx, a.shape())], vb[broadcast_source(idx, b.shape())]);
  }
  return r;
}

Shape broadcast(const Shape& a, const Shape& b) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    out[i] = da == 1 ? db : da;
  }
  return out;
}

struct UnaryCase {
  const char* name;
  std::function<Tensor(const Tensor&)> op;
  std::function<double(double)> ref;
  double lo, hi;  // input domain
};

const std::vector<UnaryCase>& unary_cases() {
  static const std::vector<UnaryCase> cases = {
      {"neg", [](const Tensor& a) { return neg(a); }, [](double x) { return -x; }, -2, 2},
      {"exp", [](const Tensor& a) { return exp(a); }, [](double x) { return std::exp(x); }, -3, 3},
      {"log", [](const Tensor& a) { return log(a); }, [](double x) { return std::log(x); }, 0.1, 4},
      {"sqrt", [](const Tensor& a) { return sqrt(a); }, [](double x) { return std::sqrt(x); }, 0.1, 4},
      {"rsqrt", [](const Tensor& a) { return rsqrt(a); }, [](double x) { return 1.0 / std::sqrt(x); }, 0.1, 4},
      {"tanh", [](const Tensor& a) { return tanh(a); }, [](double x) { return std::tanh(x); }, -3, 3},
      {"gelu", [](const Tensor& a) { return gelu(a); },
       [](double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }, -4, 4},
      {"add_scalar", [](const Tensor& a) { return add_scalar(a, -1.25); }, [](double x) { return x - 1.25; }, -2, 2},
      {"mul_scalar", [](const Tensor& a) { return mul_scalar(a, 0.375); }, [](double x) { return 0.375 * x; }, -2, 2},
      {"pow_scalar 3", [](const Tensor& a) { return pow_scalar(a, 3.0); }, [](double x) { return x * x * x; }, -2, 2},
      {"pow_scalar 0.5", [](const Tensor& a) { return pow_scalar(a, 0.5); }, [](double x) { return std::sqrt(x); }, 0.1, 3},
      {"pow_scalar -1.5", [](const Tensor& a) { return pow_scalar(a, -1.5); }, [](double x) { return std::pow(x, -1.5); },
       0.2, 3},
      {"clamp", [](const Tensor& a) { return clamp(a, -0.5, 0.75); },
       [](double x) { return x < -0.5 ? -0.5 : (x > 0.75 ? 0.75 : x); }, -2, 2},
  };
  return cases;
}

template <typename T>
class ElementwiseForward : public ::testing::Test {};
using FloatTypes = ::testing::Types<float, double>;
TYPED_TEST_SUITE(ElementwiseForward, FloatTypes);

}  // namespace

TYPED_TEST(ElementwiseForward, BinaryBroadcast) {
  const DType dt = dtype_of<TypeParam>::value;
  Generator gen(1);
  for (const BinaryCase& c : binary_cases()) {
    for (const auto& [sa, sb] : kBroadcastShapes) {
      COCA_CASE(c.name << " " << shape_str(sa) << " with " << shape_str(sb));
      Tensor a = uniform(sa, dt, gen, -2, 2);
      Tensor b = away_from_zero(sb, dt, gen);
      const Shape out = broadcast(sa, sb);
      EXPECT_TRUE(all_close(c.op(a, b), out, binary_reference(c, a, b, out), fwd_tol<TypeParam>()));
    }
  }
}

TYPED_TEST(ElementwiseForward, BinaryNonContiguous) {
  const DType dt = dtype_of<TypeParam>::value;
  Generator gen(2);
  for (const BinaryCase& c : binary_cases()) {
    COCA_CASE(c.name);
    // a: a transposed view; b: a strided column slice broadcast along rows.
    Tensor a = uniform({5, 4}, dt, gen).t();                    // [4, 5], strides {1, 4}
    Tensor b = away_from_zero({3, 10}, dt, gen).slice(1, 2, 7);  // [3, 5] row stride 10
    Tensor b_row = b.select(0, 1);                               // [5]
    EXPECT_TRUE(all_close(c.op(a, b_row), {4, 5}, binary_reference(c, a, b_row, {4, 5}), fwd_tol<TypeParam>()));
    Tensor big = uniform({3, 6, 5}, dt, gen).permute({1, 0, 2}).slice(0, 1, 5);  // [4, 3, 5]
    EXPECT_TRUE(all_close(c.op(big, b), {4, 3, 5}, binary_reference(c, big, b, {4, 3, 5}), fwd_tol<TypeParam>()));
  }
}

TYPED_TEST(ElementwiseForward, LargeEnoughToRunInParallel) {
  // Above the threshold where the strided loop is split across threads.
  const DType dt = dtype_of<TypeParam>::value;
  Generator gen(3);
  Tensor a = uniform({64, 40, 33}, dt, gen);
  Tensor b = away_from_zero({33, 1}, dt, gen);
  const BinaryCase& c = binary_cases()[3];
  EXPECT_TRUE(all_close(c.op(a.permute({0, 2, 1}), b), {64, 33, 40},
                        binary_reference(c, a.permute({0, 2, 1}), b, {64, 33, 40}), fwd_tol<TypeParam>()));
  EXPECT_TRUE(all_close(exp(a.transpose(0, 2)), {33, 40, 64},
                        [&] {
                          auto v = a.transpose(0, 2).to_double_vector();
                          for (auto& x : v) x = std::exp(x);
                          return v;
                        }(),
                        fwd_tol<TypeParam>()));
}

TYPED_TEST(ElementwiseForward, LongContiguousRunIsChunked) {
  // A contiguous tensor coalesces into one run, cut into chunks across threads; the length is
  // not a multiple of the chunk so the last one is short.
  const DType dt = dtype_of<TypeParam>::value;
  Generator gen(10);
  Tensor a = uniform({100003}, dt, gen), b = away_from_zero({1}, dt, gen), c = uniform({7, 14287}, dt, gen);
  const BinaryCase& mulc = binary_cases()[2];
  EXPECT_TRUE(all_close(mulc.op(a, b), {100003}, binary_reference(mulc, a, b, {100003}), fwd_tol<TypeParam>()));
  EXPECT_TRUE(all_close(mulc.op(c, c), {7, 14287}, binary_reference(mulc, c, c, {7, 14287}), fwd_tol<TypeParam>()));
  auto want = a.to_double_vector();
  for (auto& x : want) x = std::tanh(x);
  EXPECT_TRUE(all_close(tanh(a), {100003}, want, fwd_tol<TypeParam>()));
  EXPECT_TRUE(all_close(a.to(DType::f64).to(dt), {100003}, a.to_double_vector(), 0.0));
}

TYPED_TEST(ElementwiseForward, Unary) {
  const DType dt = dtype_of<TypeParam>::value;
  Generator gen(4);
  for (const UnaryCase& c : unary_cases()) {
    COCA_CASE(c.name);
    for (bool transposed : {false, true}) {
      Tensor a = uniform({6, 7}, dt, gen, c.lo, c.hi);
      if (transposed) a = a.t();
      auto want = a.to_double_vector();
      for (auto& x : want) x = c.ref(x);
      EXPECT_TRUE(all_close(c.op(a), a.shape(), want, fwd_tol<TypeParam>()));
    }
  }
}

TEST(ElementwiseForward, Bf16ComputesInFloat32) {
  Generator gen(5);
  Tensor a = uniform({4, 8}, DType::f32, gen).to(DType::bf16);
  Tensor b = uniform({8}, DType::f32, gen).to(DType::bf16);
  Tensor got = add(a, b);
  EXPECT_EQ(got.dtype(), DType::bf16);
  auto va = a.to_double_vector(), vb = b.to_double_vector();
  std::vector<double> want(va.size());
  for (size_t i = 0; i < va.size(); ++i)
    want[i] = static_cast<float>(bf16(static_cast<float>(va[i]) + static_cast<float>(vb[i % 8])));
  EXPECT_TRUE(all_close(got, {4, 8}, want, 0.0));
}

TEST(ElementwiseForward, OperatorsMatchTheOps) {
  Generator gen(6);
  Tensor a = uniform({3}, DType::f64, gen), b = away_from_zero({3}, DType::f64, gen);
  EXPECT_TRUE(all_equal(a + b, add(a, b)));
  EXPECT_TRUE(all_equal(a - b, sub(a, b)));
  EXPECT_TRUE(all_equal(a * b, mul(a, b)));
  EXPECT_TRUE(all_equal(a / b, div(a, b)));
  EXPECT_TRUE(all_equal(-a, neg(a)));
  EXPECT_TRUE(all_equal(a - 2.0, add_scalar(a, -2.0)));
  EXPECT_TRUE(all_equal(2.0 * a, mul_scalar(a, 2.0)));
  EXPECT_TRUE(all_close(a / 4.0, {3}, mul_scalar(a, 0.25).to_double_vector(), 0.0));
}

// ---- gradients ---------------------------------------------------------------------

TEST(ElementwiseGrad, BinaryWithBroadcastAndViews) {
  Generator gen(7);
  for (const BinaryCase& c : binary_cases()) {
    for (const auto& [sa, sb] : kBroadcastShapes) {
      COCA_CASE(c.name << " " << shape_str(sa) << " with " << shape_str(sb));
      Tensor a = uniform(sa, DType::f64, gen, -2, 2).set_requires_grad(true);
      Tensor b = away_from_zero(sb, DType::f64, gen).set_requires_grad(true);
      EXPECT_TRUE(gradcheck([&](const In& in) { return c.op(in[0], in[1]); }, {a, b}));
    }
    COCA_CASE(c.name << " non-contiguous leaves");
    Tensor a = transposed_leaf(uniform({4, 5}, DType::f64, gen, -2, 2));
    Tensor b = strided_leaf(away_from_zero({5}, DType::f64, gen));
    EXPECT_TRUE(gradcheck([&](const In& in) { return c.op(in[0], in[1]); }, {a, b}));
    // Only one side requiring grad.
    Tensor a2 = uniform({2, 3}, DType::f64, gen).set_requires_grad(true);
    Tensor b2 = away_from_zero({3}, DType::f64, gen);
    EXPECT_TRUE(gradcheck([&](const In& in) { return c.op(in[0], b2); }, {a2}));
    EXPECT_TRUE(gradcheck([&](const In& in) { return c.op(b2, in[0]); }, {away_from_zero({2, 3}, DType::f64, gen).set_requires_grad(true)}));
  }
}

TEST(ElementwiseGrad, SameTensorOnBothSides) {
  Generator gen(8);
  Tensor a = away_from_zero({3, 2}, DType::f64, gen).set_requires_grad(true);
  for (const BinaryCase& c : binary_cases()) {
    COCA_CASE(c.name);
    EXPECT_TRUE(gradcheck([&](const In& in) { return c.op(in[0], in[0].t().t()); }, {a}));
  }
}

TEST(ElementwiseGrad, Unary) {
  Generator gen(9);
  for (const UnaryCase& c : unary_cases()) {
    COCA_CASE(c.name);
    Tensor a = uniform({3, 4}, DType::f64, gen, c.lo, c.hi).set_requires_grad(true);
    EXPECT_TRUE(gradcheck([&](const In& in) { return c.op(in[0]); }, {a}));
    Tensor at = transposed_leaf(uniform({4, 3}, DType::f64, gen, c.lo, c.hi));
    EXPECT_TRUE(gradcheck([&](const In& in) { return c.op(in[0]); }, {at}));
    Tensor as = strided_leaf(uniform({2, 5}, DType::f64, gen, c.lo, c.hi));
    EXPECT_TRUE(gradcheck([&](const In& in) { return c.op(in[0].slice(1, 1, 4)); }, {as}));
  }
}

TEST(ElementwiseGrad, PowZeroHasZeroGradientEvenAtZero) {
  Tensor x = Tensor::from_vector<double>({0.0, 2.0, -1.5}, {3}).set_requires_grad(true);
  sum(pow_scalar(x, 0.0)).backward();
  EXPECT_TRUE(all_close(x.grad(), {3}, {0, 0, 0}, 0));
}

TEST(ElementwiseGrad, ClampPassesGradientOnlyInside) {
  Tensor x = Tensor::from_vector<double>({-2.0, -0.5, 0.1, 0.75, 3.0}, {5}).set_requires_grad(true);
  sum(clamp(x, -0.5, 0.75)).backward();
  // Inside and on the bounds: 1 (the subgradient chosen at the bounds); outside: 0.
  EXPECT_TRUE(all_close(x.grad(), {5}, {0, 1, 1, 1, 0}, 0));
}

// bias_gelu(h, b) = gelu(h + b): the forward against the erf formula in float64 on the host, the
// gradients of both inputs against finite differences, and a float32 case large enough for the
// row-parallel kernel (its bias gradient summed from per-thread partials) against plain loops.
namespace {

double gelu_ref(double v) { return 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0))); }
double gelu_grad_ref(double v) {
  return 0.5 * (1.0 + std::erf(v / std::sqrt(2.0))) + v * std::exp(-0.5 * v * v) / std::sqrt(2.0 * M_PI);
}

}  // namespace

TYPED_TEST(ElementwiseForward, BiasGeluMatchesTheFormula) {
  const DType dt = dtype_of<TypeParam>::value;
  Generator gen(21);
  for (const Shape& s : {Shape{7}, Shape{3, 5}, Shape{2, 3, 9}, Shape{300, 130}}) {
    COCA_CASE(shape_str(s));
    Tensor h = uniform(s, dt, gen, -4, 4);
    Tensor b = uniform({s.back()}, dt, gen, -1, 1);
    const auto vh = h.to_double_vector(), vb = b.to_double_vector();
    std::vector<double> want(vh.size());
    for (size_t i = 0; i < vh.size(); ++i) want[i] = gelu_ref(vh[i] + vb[i % vb.size()]);
    EXPECT_TRUE(all_close(bias_gelu(h, b), s, want, fwd_tol<TypeParam>()));
  }
}

TYPED_TEST(ElementwiseForward, BiasGeluBackwardAgainstPlainLoops) {
  const DType dt = dtype_of<TypeParam>::value;
  Generator gen(22);
  const int64_t R = 300, C = 130;  // > 32768 elements: the parallel kernel
  Tensor h = uniform({R, C}, dt, gen, -4, 4).set_requires_grad(true);
  Tensor b = uniform({C}, dt, gen, -1, 1).set_requires_grad(true);
  Tensor g = uniform({R, C}, dt, gen);
  bias_gelu(h, b).backward(g);
  const auto vh = h.detach().to_double_vector(), vb = b.detach().to_double_vector(), vg = g.to_double_vector();
  std::vector<double> dh(vh.size()), db(C, 0.0);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < C; ++c) {
      const size_t i = r * C + c;
      dh[i] = vg[i] * gelu_grad_ref(vh[i] + vb[c]);
      db[c] += dh[i];
    }
  EXPECT_TRUE(all_close(h.grad(), {R, C}, dh, fwd_tol<TypeParam>()));
  // A sum of R terms: float32 rounding grows with R.
  EXPECT_TRUE(all_close(b.grad(), {C}, db, std::is_same_v<TypeParam, float> ? 2e-4 : 1e-10));
}

TEST(ElementwiseGrad, BiasGelu) {
  Generator gen(23);
  Tensor h = uniform({3, 2, 5}, DType::f64, gen, -3, 3).set_requires_grad(true);
  Tensor b = uniform({5}, DType::f64, gen, -1, 1).set_requires_grad(true);
  EXPECT_TRUE(gradcheck([](const In& in) { return bias_gelu(in[0], in[1]); }, {h, b}));
  // Non-contiguous h (a transposed view) and a strided bias.
  Tensor ht = transposed_leaf(uniform({5, 4}, DType::f64, gen, -3, 3));
  Tensor bs = strided_leaf(uniform({4}, DType::f64, gen, -1, 1));
  EXPECT_TRUE(gradcheck([](const In& in) { return bias_gelu(in[0], in[1]); }, {ht, bs}));
  // Only h needs a gradient.
  Tensor b_fixed = uniform({5}, DType::f64, gen);
  EXPECT_TRUE(gradcheck([&](const In& in) { return bias_gelu(in[0], b_fixed); }, {h}));
}

TEST(ElementwiseGrad, BiasGeluRejectsAMismatchedBias) {
  Tensor h = Tensor::zeros({2, 3}, DType::f32), b = Tensor::zeros({4}, DType::f32);
  EXPECT_THROW(bias_gelu(h, b), Error);
}
