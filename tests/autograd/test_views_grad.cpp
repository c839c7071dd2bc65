// Gradients of the view ops and conversions, and a check that gradcheck itself catches a
// wrong backward (so that a passing gradcheck means something).
#include <gtest/gtest.h>

#include "coca/autograd/ops.h"
#include "common/gradcheck.h"
#include "common/test_util.h"

using namespace coca;
using coca::testing::gradcheck;
using coca::testing::strided_leaf;
using coca::testing::transposed_leaf;
using In = std::vector<Tensor>;

namespace {

Tensor rnd(const Shape& s, uint64_t seed) {
  Generator g(seed);
  return Tensor::randn(s, g, DType::f64).set_requires_grad(true);
}

// y = x^2 with a deliberately wrong backward (3x instead of 2x) at one element only.
Tensor bad_square(const Tensor& x) {
  Tensor y = mul(x.detach(), x.detach());
  record(y, "bad_square", {x}, [xs = x.detach()](const Tensor& g) {
    Tensor d = mul_scalar(mul(g, xs), 2.0);
    Tensor wrong = d.clone();
    wrong.data<double>()[4] *= 1.5;
    return std::vector<Tensor>{wrong};
  });
  return y;
}

}  // namespace

TEST(Gradcheck, CatchesAWrongBackwardAndNamesTheElement) {
  Tensor x = rnd({2, 3}, 1);
  auto res = gradcheck([](const In& in) { return bad_square(in[0]); }, {x});
  ASSERT_FALSE(res);
  EXPECT_NE(std::string(res.message()).find("[1, 1]"), std::string::npos) << res.message();
  // The same function with the right backward passes.
  EXPECT_TRUE(gradcheck([](const In& in) { return mul(in[0], in[0]); }, {x}));
}

TEST(Gradcheck, CatchesAGradientThatOnlyASumCheckWouldMiss) {
  // Backward returns the transpose of the right gradient: right for a sum (all-ones
  // cotangent, symmetric), wrong for a random cotangent.
  Tensor x = rnd({3, 3}, 2);
  auto f = [](const In& in) {
    Tensor y = mul_scalar(in[0].detach(), 2.0);
    record(y, "bad_scale", {in[0]}, [](const Tensor& g) { return std::vector<Tensor>{mul_scalar(g.t(), 2.0)}; });
    return y;
  };
  EXPECT_FALSE(gradcheck(f, {x}));
}

TEST(ViewsGrad, ReshapePermuteTranspose) {
  Tensor x = rnd({2, 3, 4}, 3);
  EXPECT_TRUE(gradcheck([](const In& in) { return in[0].reshape({4, -1}); }, {x}));
  EXPECT_TRUE(gradcheck([](const In& in) { return in[0].permute({2, 0, 1}); }, {x}));
  EXPECT_TRUE(gradcheck([](const In& in) { return in[0].transpose(0, 2).reshape({-1}); }, {x}));
  EXPECT_TRUE(gradcheck([](const In& in) { return in[0].t(); }, {transposed_leaf(x)}));
  EXPECT_TRUE(gradcheck([](const In& in) { return in[0].reshape({6, 4}); }, {strided_leaf(x)}));
}

TEST(ViewsGrad, SliceSelectExpandSqueeze) {
  Tensor x = rnd({3, 4, 2}, 4);
  EXPECT_TRUE(gradcheck([](const In& in) { return in[0].slice(1, 1, 3); }, {x}));
  EXPECT_TRUE(gradcheck([](const In& in) { return in[0].select(0, 2); }, {x}));
  EXPECT_TRUE(gradcheck([](const In& in) { return in[0].select(-1, 1).slice(0, 0, 2); }, {strided_leaf(x)}));
  Tensor col = rnd({3, 1}, 5);
  EXPECT_TRUE(gradcheck([](const In& in) { return in[0].expand({2, 3, 5}); }, {col}));
  EXPECT_TRUE(gradcheck([](const In& in) { return in[0].unsqueeze(0).unsqueeze(-1); }, {x}));
  EXPECT_TRUE(gradcheck([](const In& in) { return in[0].squeeze(1); }, {col}));
  EXPECT_TRUE(gradcheck([](const In& in) { return in[0].t().contiguous(); }, {x.select(2, 0).detach().clone().set_requires_grad(true)}));
}

TEST(ViewsGrad, OverlappingSlicesAndClone) {
  // Two overlapping windows of one tensor: their gradients add where they overlap.
  Tensor x = rnd({6, 3}, 6);
  EXPECT_TRUE(gradcheck(
      [](const In& in) { return mul(in[0].slice(0, 0, 4), exp(in[0].slice(0, 2, 6))).clone(); }, {x}));
}

TEST(ViewsGrad, ToFloat32AndBack) {
  // The f32 round trip loses precision, so compare with a looser tolerance.
  Tensor x = rnd({2, 3}, 7);
  coca::testing::GradcheckOptions opt;
  opt.eps = 1e-2;
  opt.rtol = 1e-4;
  opt.atol = 1e-4;
  EXPECT_TRUE(gradcheck([](const In& in) { return mul_scalar(in[0].to(DType::f32), 3.0).to(DType::f64); }, {x}, opt));
}

TEST(ViewsGrad, ThroughBf16) {
  // The gradient flows back through a bf16 round trip, converted at each step.
  Tensor x = Tensor::from_vector<float>({1.0f, -2.5f, 3.0f}, {3}).set_requires_grad(true);
  Tensor y = mul_scalar(x.to(DType::bf16).to(DType::f32), 3.0);
  y.backward(Tensor::from_vector<float>({1.0f, 0.5f, 2.0f}, {3}));
  EXPECT_EQ(x.grad().dtype(), DType::f32);
  EXPECT_EQ(x.grad().to_vector<float>(), std::vector<float>({3.0f, 1.5f, 6.0f}));
}
