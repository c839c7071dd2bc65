// concat, split, the view ops against index arithmetic, and dropout.
#include <gtest/gtest.h>

#include <cmath>

#include "coca/autograd/ops.h"
#include "common/gradcheck.h"
#include "common/test_util.h"

using namespace coca;
using namespace coca::testing;
using In = std::vector<Tensor>;

namespace {

template <typename T>
class ShapeForward : public ::testing::Test {};
using FloatTypes = ::testing::Types<float, double>;
TYPED_TEST_SUITE(ShapeForward, FloatTypes);

}  // namespace

TYPED_TEST(ShapeForward, ConcatAndSplit) {
  const DType dt = dtype_of<TypeParam>::value;
  Generator gen(1);
  for (int64_t dim : {0, 1, 2, -1}) {
    COCA_CASE("dim " << dim);
    const int64_t d = dim < 0 ? dim + 3 : dim;
    Shape s1 = {2, 3, 4}, s2 = {2, 3, 4}, s3 = {2, 3, 4};
    s1[d] = 1;
    s2[d] = 3;
    s3[d] = 2;
    // Parts in different layouts: contiguous, transposed storage, strided.
    Tensor p1 = uniform(s1, dt, gen), p2 = transposed_leaf(uniform(s2, dt, gen), false),
           p3 = strided_leaf(uniform(s3, dt, gen), false);
    Tensor out = concat({p1, p2, p3}, dim);
    Shape os = s1;
    os[d] = 6;
    std::vector<double> want(shape_numel(os));
    const std::vector<Tensor> parts = {p1, p2, p3};
    for (int64_t i = 0; i < shape_numel(os); ++i) {
      Shape idx = unravel_index(i, os);
      int64_t at = idx[d], which = 0;
      while (at >= parts[which].shape()[d]) at -= parts[which++].shape()[d];
      idx[d] = at;
      want[i] = parts[which].to_double_vector()[ravel(idx, parts[which].shape())];
    }
    EXPECT_TRUE(all_close(out, os, want, 0.0));
    auto pieces = split(out, {1, 3, 2}, dim);
    ASSERT_EQ(pieces.size(), 3u);
    for (size_t k = 0; k < 3; ++k) EXPECT_TRUE(all_equal(pieces[k], parts[k]));
    // split returns views of its input.
    EXPECT_EQ(pieces[1].impl().storage.get(), out.impl().storage.get());
  }
  Tensor a = uniform({2, 3}, dt, gen);
  auto with_empty = split(a, {0, 3, 0}, 1);
  EXPECT_EQ(with_empty[0].shape(), Shape({2, 0}));
  EXPECT_TRUE(all_equal(concat(with_empty, 1), a));
}

TYPED_TEST(ShapeForward, ViewsFollowIndexArithmetic) {
  const DType dt = dtype_of<TypeParam>::value;
  Generator gen(2);
  Tensor a = uniform({2, 3, 4}, dt, gen);
  const auto v = a.to_double_vector();
  auto at = [&](int64_t i, int64_t j, int64_t k) { return v[(i * 3 + j) * 4 + k]; };
  {  // permute {2, 0, 1}: out[k, i, j] = a[i, j, k]
    std::vector<double> want;
    for (int64_t k = 0; k < 4; ++k)
      for (int64_t i = 0; i < 2; ++i)
        for (int64_t j = 0; j < 3; ++j) want.push_back(at(i, j, k));
    EXPECT_TRUE(all_close(a.permute({2, 0, 1}), {4, 2, 3}, want, 0.0));
    EXPECT_TRUE(all_close(a.permute({2, 0, 1}).contiguous(), {4, 2, 3}, want, 0.0));
  }
  {  // transpose(0, 2) then slice(1, 1, 3) then select(0, 3): out[i', ] ...
    std::vector<double> want;
    for (int64_t j = 1; j < 3; ++j)
      for (int64_t i = 0; i < 2; ++i) want.push_back(at(i, j, 3));
    EXPECT_TRUE(all_close(a.transpose(0, 2).slice(1, 1, 3).select(0, 3), {2, 2}, want, 0.0));
  }
  {  // unsqueeze / expand / squeeze
    Tensor row = a.select(0, 1).select(0, 2);  // [4]
    std::vector<double> want;
    for (int64_t r = 0; r < 3; ++r)
      for (int64_t k = 0; k < 4; ++k) want.push_back(at(1, 2, k));
    EXPECT_TRUE(all_close(row.unsqueeze(0).expand({3, 4}), {3, 4}, want, 0.0));
    EXPECT_TRUE(all_close(row.unsqueeze(1).squeeze(1), {4}, std::vector<double>(want.begin(), want.begin() + 4), 0.0));
    EXPECT_TRUE(all_close(a.reshape({6, 4}).reshape({2, 3, 4}), {2, 3, 4}, v, 0.0));
    EXPECT_TRUE(all_close(a.to(DType::f64).to(dt), {2, 3, 4}, v, 0.0));
  }
}

// ---- gradients ---------------------------------------------------------------------

TEST(ShapeGrad, ConcatSplit) {
  Generator gen(3);
  Tensor a = uniform({2, 3}, DType::f64, gen).set_requires_grad(true);
  Tensor b = transposed_leaf(uniform({2, 4}, DType::f64, gen));
  Tensor c = uniform({2, 1}, DType::f64, gen);  // no grad
  EXPECT_TRUE(gradcheck([&](const In& in) { return concat({in[0], in[1], c}, 1); }, {a, b}));
  EXPECT_TRUE(gradcheck([&](const In& in) { return concat({in[0].t(), in[1].t()}, 0); }, {a, b}));
  Tensor x = uniform({5, 3}, DType::f64, gen).set_requires_grad(true);
  EXPECT_TRUE(gradcheck(
      [](const In& in) {
        auto p = split(in[0], {2, 1, 2}, 0);
        return concat({mul(p[0], p[2]), exp(p[1])}, 0);
      },
      {x}));
}

TEST(Dropout, IdentityAtZeroAndInEval) {
  Generator gen(4);
  Tensor a = uniform({3, 4}, DType::f32, gen);
  Generator g(1);
  EXPECT_TRUE(dropout(a, 0.0, g).same(a));
  EXPECT_TRUE(dropout(a, 0.5, g, false).same(a));
  EXPECT_THROW(dropout(a, 1.0, g), Error);
  EXPECT_THROW(dropout(a, -0.1, g), Error);
}

TEST(Dropout, SeededMaskScalesKeptValues) {
  Generator gen(5);
  const double p = 0.3;
  Tensor a = uniform({64, 50}, DType::f64, gen, 0.5, 1.5);  // never 0, so dropped = exactly 0
  Generator g1(77), g2(77);
  Tensor y1 = dropout(a, p, g1), y2 = dropout(a, p, g2);
  EXPECT_TRUE(all_equal(y1, y2));  // same seed, same mask
  Generator g3(78);
  Tensor y3 = dropout(a, p, g3);
  EXPECT_FALSE(all_close(y1, y3.shape(), y3.to_double_vector(), 0.0));
  const auto va = a.to_double_vector(), vy = y1.to_double_vector();
  int64_t dropped = 0;
  for (size_t i = 0; i < va.size(); ++i) {
    if (vy[i] == 0.0) {
      ++dropped;
    } else {
      EXPECT_NEAR(vy[i], va[i] / (1 - p), 1e-12) << i;
    }
  }
  // 3200 Bernoulli(0.3) draws: mean 960, std ~26.
  EXPECT_NEAR(static_cast<double>(dropped), 960.0, 130.0);
  // The mask follows the generator stream in logical order: element i dropped iff u_i < p.
  Generator g4(77);
  for (size_t i = 0; i < va.size(); ++i) ASSERT_EQ(vy[i] == 0.0, g4.uniform() < p) << i;
}

TEST(Dropout, GradientUsesTheSameMask) {
  Generator gen(6);
  Tensor a = uniform({4, 5}, DType::f64, gen).set_requires_grad(true);
  // Re-seeded inside: every evaluation draws the same mask.
  EXPECT_TRUE(gradcheck(
      [](const In& in) {
        Generator g(9);
        return dropout(in[0], 0.4, g);
      },
      {a}));
  EXPECT_TRUE(gradcheck(
      [](const In& in) {
        Generator g(9);
        return dropout(in[0].t(), 0.4, g);
      },
      {transposed_leaf(a)}));
}
