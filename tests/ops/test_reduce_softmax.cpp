// sum / mean / max over axes and softmax / log_softmax over last and non-last dims.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "coca/autograd/ops.h"
#include "coca/kernels/cpu/fast_math.h"
#include "common/gradcheck.h"
#include "common/test_util.h"

using namespace coca;
using namespace coca::testing;
using In = std::vector<Tensor>;

namespace {

enum class Red { Sum, Mean, Max };

// Plain reduction: visits every input element and folds it into the output element whose
// index is the input index with the reduced dims removed (or set to 0 with keepdim).
std::vector<double> ref_reduce(const Tensor& a, std::vector<int64_t> dims, bool keepdim, Red kind, Shape& out_shape) {
  const Shape& s = a.shape();
  const int64_t nd = a.dim();
  if (dims.empty())
    for (int64_t d = 0; d < nd; ++d) dims.push_back(d);
  for (auto& d : dims) d = d < 0 ? d + nd : d;
  auto reduced = [&](int64_t d) { return std::find(dims.begin(), dims.end(), d) != dims.end(); };
  out_shape.clear();
  Shape keep_shape;  // keepdim geometry, used for indexing
  for (int64_t d = 0; d < nd; ++d) {
    keep_shape.push_back(reduced(d) ? 1 : s[d]);
    if (!reduced(d)) out_shape.push_back(s[d]);
    else if (keepdim) out_shape.push_back(1);
  }
  const int64_t n_out = shape_numel(keep_shape);
  std::vector<double> acc(n_out, kind == Red::Max ? -std::numeric_limits<double>::infinity() : 0.0);
  int64_t count = 1;
  for (auto d : dims) count *= s[d];
  const auto v = a.to_double_vector();
  for (int64_t i = 0; i < a.numel(); ++i) {
    Shape idx = unravel_index(i, s);
    for (int64_t d = 0; d < nd; ++d)
      if (reduced(d)) idx[d] = 0;
    double& o = acc[ravel(idx, keep_shape)];
    o = kind == Red::Max ? std::max(o, v[i]) : o + v[i];
  }
  if (kind == Red::Mean)
    for (auto& x : acc) x /= static_cast<double>(count);
  return acc;
}

// Softmax along `dim` by plain loops over every line of that dim.
std::vector<double> ref_softmax(const Tensor& a, int64_t dim, bool log) {
  const Shape& s = a.shape();
  dim = dim < 0 ? dim + a.dim() : dim;
  const auto v = a.to_double_vector();
  std::vector<double> out(v.size());
  for (int64_t i = 0; i < a.numel(); ++i) {
    Shape idx = unravel_index(i, s);
    if (idx[dim] != 0) continue;  // one line per start element
    std::vector<int64_t> line;
    for (int64_t j = 0; j < s[dim]; ++j) {
      idx[dim] = j;
      line.push_back(ravel(idx, s));
    }
    double m = -std::numeric_limits<double>::infinity(), z = 0;
    for (auto p : line) m = std::max(m, v[p]);
    for (auto p : line) z += std::exp(v[p] - m);
    for (auto p : line) out[p] = log ? v[p] - m - std::log(z) : std::exp(v[p] - m) / z;
  }
  return out;
}

template <typename T>
class ReduceForward : public ::testing::Test {};
using FloatTypes = ::testing::Types<float, double>;
TYPED_TEST_SUITE(ReduceForward, FloatTypes);

const std::vector<std::vector<int64_t>> kDimSets = {{}, {0}, {1}, {-1}, {0, 2}, {1, 2}, {2, 0}, {0, 1, 2}};

}  // namespace

TYPED_TEST(ReduceForward, SumAndMean) {
  const DType dt = dtype_of<TypeParam>::value;
  Generator gen(1);
  Tensor base = uniform({3, 4, 5}, dt, gen);
  const std::vector<std::pair<const char*, Tensor>> inputs = {
      {"contiguous", base}, {"permuted", uniform({5, 3, 4}, dt, gen).permute({1, 2, 0})},
      {"sliced", uniform({3, 6, 5}, dt, gen).slice(1, 1, 5)}};
  for (const auto& [name, a] : inputs)
    for (const auto& dims : kDimSets)
      for (bool keepdim : {false, true}) {
        COCA_CASE(name << " dims " << shape_str(dims) << (keepdim ? " keepdim" : ""));
        Shape os;
        auto want = ref_reduce(a, dims, keepdim, Red::Sum, os);
        EXPECT_TRUE(all_close(sum(a, dims, keepdim), os, want, fwd_tol<TypeParam>()));
        want = ref_reduce(a, dims, keepdim, Red::Mean, os);
        EXPECT_TRUE(all_close(mean(a, dims, keepdim), os, want, fwd_tol<TypeParam>()));
      }
}

TYPED_TEST(ReduceForward, SumLargeRowsAndColumns) {
  // Sizes past the parallel thresholds, reducing the inner and the outer axis.
  const DType dt = dtype_of<TypeParam>::value;
  Generator gen(2);
  Tensor a = uniform({300, 700}, dt, gen);
  for (const std::vector<int64_t>& dims : {std::vector<int64_t>{0}, std::vector<int64_t>{1}}) {
    Shape os;
    auto want = ref_reduce(a, dims, false, Red::Sum, os);
    EXPECT_TRUE(all_close(sum(a, dims), os, want, 10 * fwd_tol<TypeParam>()));
  }
}

TYPED_TEST(ReduceForward, SumOfOneLongVector) {
  // The chunked parallel full reduction; the chunk partials are added in a fixed order, so the
  // result is identical whatever the thread count.
  const DType dt = dtype_of<TypeParam>::value;
  Generator gen(12);
  Tensor a = uniform({200001}, dt, gen);
  Shape os;
  auto want = ref_reduce(a, {}, false, Red::Sum, os);
  // float32 accumulates 200k terms: allow ~sqrt(n) * eps relative to the sum of magnitudes.
  const double tol = std::is_same_v<TypeParam, float> ? 1e-3 : 1e-10;
  EXPECT_TRUE(all_close(sum(a), os, want, tol));
  EXPECT_TRUE(all_close(mean(a.reshape({3, 66667}), {0, 1}), {}, {want[0] / 200001.0}, tol));
}

TYPED_TEST(ReduceForward, MaxOverEveryDim) {
  const DType dt = dtype_of<TypeParam>::value;
  Generator gen(3);
  for (const Shape& s : {Shape{7}, Shape{3, 4}, Shape{3, 4, 5}, Shape{2, 3, 4, 5}}) {
    Tensor a = uniform(s, dt, gen);
    for (int64_t d = -1; d < static_cast<int64_t>(s.size()); ++d)
      for (bool keepdim : {false, true}) {
        COCA_CASE(shape_str(s) << " dim " << d << (keepdim ? " keepdim" : ""));
        Shape os;
        auto want = ref_reduce(a, {d}, keepdim, Red::Max, os);
        EXPECT_TRUE(all_close(max(a, d, keepdim), os, want, 0.0));
        if (s.size() > 1) EXPECT_TRUE(all_close(max(transposed_leaf(a, false), d, keepdim), os, want, 0.0));
      }
  }
}

TYPED_TEST(ReduceForward, SoftmaxAndLogSoftmaxEveryDim) {
  const DType dt = dtype_of<TypeParam>::value;
  Generator gen(4);
  for (const Shape& s : {Shape{9}, Shape{3, 7}, Shape{2, 3, 5}}) {
    for (bool noncontig : {false, true}) {
      Tensor a = mul_scalar(uniform(s, dt, gen), 4.0);
      if (noncontig && s.size() > 1) a = transposed_leaf(a, false);
      for (int64_t d = 0; d < static_cast<int64_t>(s.size()); ++d) {
        COCA_CASE(shape_str(s) << " dim " << d << (noncontig ? " non-contiguous" : ""));
        EXPECT_TRUE(all_close(softmax(a, d), s, ref_softmax(a, d, false), fwd_tol<TypeParam>()));
        EXPECT_TRUE(all_close(log_softmax(a, d), s, ref_softmax(a, d, true), fwd_tol<TypeParam>()));
      }
    }
  }
  // Large logits must not overflow (the row max is subtracted).
  Tensor big = Tensor::from_vector<double>({1000, 1001, 999}, {1, 3}).to(dt);
  EXPECT_TRUE(all_close(softmax(big), {1, 3}, ref_softmax(big, 1, false), fwd_tol<TypeParam>()));
  EXPECT_TRUE(all_close(log_softmax(big, 1), {1, 3}, ref_softmax(big, 1, true), fwd_tol<TypeParam>()));
  // Rows long enough and numerous enough for the parallel path.
  Tensor many = uniform({64, 300}, dt, gen);
  EXPECT_TRUE(all_close(softmax(many, 0), {64, 300}, ref_softmax(many, 0, false), fwd_tol<TypeParam>()));
}

// ---- gradients ---------------------------------------------------------------------

TEST(ReduceGrad, SumMeanOverAxes) {
  Generator gen(5);
  Tensor a = uniform({3, 4, 2}, DType::f64, gen).set_requires_grad(true);
  for (const auto& dims : kDimSets)
    for (bool keepdim : {false, true}) {
      COCA_CASE("dims " << shape_str(dims) << (keepdim ? " keepdim" : ""));
      EXPECT_TRUE(gradcheck([&](const In& in) { return sum(in[0], dims, keepdim); }, {a}));
      EXPECT_TRUE(gradcheck([&](const In& in) { return mean(in[0], dims, keepdim); }, {transposed_leaf(a)}));
    }
}

TEST(ReduceGrad, MaxOverEveryDim) {
  Generator gen(6);
  Tensor a = uniform({3, 4, 5}, DType::f64, gen).set_requires_grad(true);
  for (int64_t d = 0; d < 3; ++d)
    for (bool keepdim : {false, true}) {
      COCA_CASE("dim " << d << (keepdim ? " keepdim" : ""));
      EXPECT_TRUE(gradcheck([&](const In& in) { return max(in[0], d, keepdim); }, {a}));
      EXPECT_TRUE(gradcheck([&](const In& in) { return max(in[0], d, keepdim); }, {strided_leaf(a)}));
    }
}

TEST(ReduceGrad, MaxTiesGoToTheFirst) {
  Tensor a = Tensor::from_vector<double>({1, 3, 3, 2, 5, 5}, {2, 3}).set_requires_grad(true);
  sum(max(a, 1)).backward();
  EXPECT_TRUE(all_close(a.grad(), {2, 3}, {0, 1, 0, 0, 1, 0}, 0));
}

TEST(ReduceGrad, SoftmaxLogSoftmaxEveryDim) {
  Generator gen(7);
  Tensor a = mul_scalar(uniform({3, 4, 5}, DType::f64, gen), 3.0).detach().set_requires_grad(true);
  for (int64_t d : {0, 1, 2, -1}) {
    COCA_CASE("dim " << d);
    EXPECT_TRUE(gradcheck([&](const In& in) { return softmax(in[0], d); }, {a}));
    EXPECT_TRUE(gradcheck([&](const In& in) { return log_softmax(in[0], d); }, {a}));
    EXPECT_TRUE(gradcheck([&](const In& in) { return softmax(in[0], d); }, {transposed_leaf(a)}));
    EXPECT_TRUE(gradcheck([&](const In& in) { return log_softmax(in[0], d); }, {strided_leaf(a)}));
  }
}

TEST(ReduceGrad, LargeMaxAndSoftmaxBackwardMatchFormulas) {
  // Sizes past the parallel thresholds of the backward kernels.
  Generator gen(9);
  Tensor a = uniform({300, 150}, DType::f64, gen).set_requires_grad(true);
  Tensor g = uniform({150}, DType::f64, gen);
  max(a, 0).backward(g);
  const auto va = a.to_double_vector(), vg = g.to_double_vector();
  std::vector<double> want(va.size(), 0.0);
  for (int64_t c = 0; c < 150; ++c) {
    int64_t best = 0;
    for (int64_t r = 1; r < 300; ++r)
      if (va[r * 150 + c] > va[best * 150 + c]) best = r;
    want[best * 150 + c] = vg[c];
  }
  EXPECT_TRUE(all_close(a.grad(), {300, 150}, want, 0.0));

  for (bool log : {false, true}) {
    COCA_CASE((log ? "log_softmax" : "softmax"));
    a.zero_grad();
    Tensor cot = uniform({300, 150}, DType::f64, gen);
    Tensor y = log ? log_softmax(a, 1) : softmax(a, 1);
    y.backward(cot);
    const auto vy = y.to_double_vector(), vc = cot.to_double_vector();
    for (int64_t r = 0; r < 300; ++r) {
      double s = 0;
      for (int64_t c = 0; c < 150; ++c) s += log ? vc[r * 150 + c] : vc[r * 150 + c] * vy[r * 150 + c];
      for (int64_t c = 0; c < 150; ++c) {
        const int64_t i = r * 150 + c;
        want[i] = log ? vc[i] - std::exp(vy[i]) * s : vy[i] * (vc[i] - s);
      }
    }
    EXPECT_TRUE(all_close(a.grad(), {300, 150}, want, 1e-13));
  }
}

TEST(ReduceGrad, SumToShapeIsTheAdjointOfBroadcast) {
  Generator gen(8);
  Tensor g = uniform({2, 3, 4}, DType::f64, gen);
  auto vg = g.to_double_vector();
  Tensor r = sum_to_shape(g, {3, 1});
  std::vector<double> want(3, 0.0);
  for (int64_t i = 0; i < 24; ++i) want[(i / 4) % 3] += vg[i];
  EXPECT_TRUE(all_close(r, {3, 1}, want, 1e-14));
  EXPECT_THROW(sum_to_shape(g, {2, 4}), Error);
}

// The float32 exp of softmax, attention and cross entropy: within a few ulp of libm over the
// range the kernels use, exactly 0 for a masked (-inf) score, NaN kept.
TEST(SoftmaxExp, Float32AgainstLibm) {
  double worst = 0;
  for (int i = 0; i <= 200000; ++i) {
    const float x = -87.0f + 87.0f * static_cast<float>(i) / 200000.0f;  // [-87, 0]: x - max <= 0
    const double want = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::fabs(cpu::softmax_exp(x) - want) / want);
  }
  EXPECT_LT(worst, 4 * std::numeric_limits<float>::epsilon());
  EXPECT_EQ(cpu::softmax_exp(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_EQ(cpu::softmax_exp(-100.0f), 0.0f);
  EXPECT_EQ(cpu::softmax_exp(0.0f), 1.0f);
  EXPECT_TRUE(std::isnan(cpu::softmax_exp(std::numeric_limits<float>::quiet_NaN())));
  // float64 keeps libm.
  EXPECT_EQ(cpu::softmax_exp(-3.25), std::exp(-3.25));
}
