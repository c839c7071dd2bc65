// The autograd engine: accumulation, grad mode, graph lifetime, detach.
#include <gtest/gtest.h>

#include "coca/autograd/ops.h"
#include "common/test_util.h"

using namespace coca;
using coca::testing::all_close;

namespace {
Tensor leaf(const std::vector<double>& v, const Shape& s) {
  return Tensor::from_vector<double>(v, s).set_requires_grad(true);
}
}  // namespace

TEST(Engine, TensorUsedTwiceAddsGradients) {
  Tensor x = leaf({1, -2, 3}, {3});
  // y = sum(x * x + 3 x): dy/dx = 2x + 3
  Tensor y = sum(add(mul(x, x), mul_scalar(x, 3.0)));
  y.backward();
  EXPECT_TRUE(all_close(x.grad(), {3}, {5, -1, 9}, 0));
  // The same leaf through two different paths that meet again (a diamond).
  Tensor z = leaf({0.5, 2.0}, {2});
  Tensor a = exp(z), b = mul_scalar(z, 2.0);
  sum(mul(a, b)).backward();  // d/dz (2 z e^z) = 2 e^z (1 + z)
  EXPECT_TRUE(all_close(z.grad(), {2}, {2 * std::exp(0.5) * 1.5, 2 * std::exp(2.0) * 3.0}, 1e-15));
}

TEST(Engine, GradientsAccumulateOverTwoBackwards) {
  Tensor x = leaf({1, 2}, {2});
  sum(mul_scalar(x, 3.0)).backward();
  sum(mul(x, x)).backward();
  EXPECT_TRUE(all_close(x.grad(), {2}, {3 + 2, 3 + 4}, 0));
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
  sum(x).backward();
  EXPECT_TRUE(all_close(x.grad(), {2}, {1, 1}, 0));
}

TEST(Engine, AccumulatedGradientDoesNotAliasTheIncoming) {
  // The first gradient stored must be a copy: here it would otherwise alias the expand'ed ones.
  Tensor x = leaf({1, 2, 3}, {3});
  sum(x).backward();
  sum(x).backward();
  EXPECT_TRUE(all_close(x.grad(), {3}, {2, 2, 2}, 0));
}

TEST(Engine, LeavesSharingOneGradientGetBuffersOfTheirOwn) {
  // add's backward hands the same gradient tensor to both leaves. A first gradient may be
  // adopted without a copy only when nothing else holds it: at most one of them can adopt it.
  Tensor p = leaf({1, 2, 3}, {3}), q = leaf({4, 5, 6}, {3});
  sum(mul_scalar(add(p, q), 2.0)).backward();
  ASSERT_TRUE(all_close(p.grad(), {3}, {2, 2, 2}, 0));
  ASSERT_TRUE(all_close(q.grad(), {3}, {2, 2, 2}, 0));
  q.grad().fill_(7.0);
  EXPECT_TRUE(all_close(p.grad(), {3}, {2, 2, 2}, 0));
  // An adopted gradient then accumulates like a copied one.
  sum(mul_scalar(p, 3.0)).backward();
  EXPECT_TRUE(all_close(p.grad(), {3}, {5, 5, 5}, 0));
  EXPECT_TRUE(all_close(q.grad(), {3}, {7, 7, 7}, 0));
}

TEST(Engine, AdoptedGradientIsNotOneAnotherNodeStillReads) {
  // add hands one gradient tensor to p's accumulator and to q's mul_scalar, which runs after it
  // here; p's post-accumulate hook then changes p.grad in place. q must still see the gradient
  // as it was: p may adopt the tensor only if nothing else holds it.
  Tensor p = leaf({1, 2}, {2}), q = leaf({3, 4}, {2});
  p.impl().post_accumulate_hook = [](TensorImpl& impl) { Tensor(impl.grad).fill_(100.0); };
  sum(mul_scalar(add(mul_scalar(q, 1.0), p), 2.0)).backward();
  EXPECT_TRUE(all_close(q.grad(), {2}, {2, 2}, 0));
  EXPECT_TRUE(all_close(p.grad(), {2}, {100, 100}, 0));
}

TEST(Engine, NoGradGuardRecordsNothing) {
  Tensor x = leaf({1, 2}, {2});
  {
    NoGradGuard guard;
    EXPECT_FALSE(grad_enabled());
    Tensor y = exp(x);
    EXPECT_FALSE(y.requires_grad());
    EXPECT_EQ(y.grad_fn(), nullptr);
    Tensor v = x.unsqueeze(0).t();  // views too
    EXPECT_EQ(v.grad_fn(), nullptr);
    EXPECT_THROW(sum(y).backward(), Error);
    {
      NoGradGuard nested;
    }
    EXPECT_FALSE(grad_enabled());  // restores the outer state, not "on"
  }
  EXPECT_TRUE(grad_enabled());
  Tensor y = exp(x);
  EXPECT_TRUE(y.requires_grad());
  EXPECT_NE(y.grad_fn(), nullptr);
  EXPECT_EQ(y.grad_fn()->name, "exp");
}

TEST(Engine, NoRequiresGradNoGraph) {
  Tensor a = Tensor::from_vector<double>({1, 2}, {2});
  Tensor y = mul(a, a);
  EXPECT_FALSE(y.requires_grad());
  EXPECT_EQ(y.grad_fn(), nullptr);
  EXPECT_THROW(y.backward(Tensor::ones({2}, DType::f64)), Error);
}

TEST(Engine, SecondBackwardThroughFreedGraphThrows) {
  Tensor x = leaf({1, 2}, {2});
  Tensor y = sum(exp(x));
  y.backward();
  try {
    y.backward();
    FAIL() << "second backward did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("second time"), std::string::npos) << e.what();
  }
}

TEST(Engine, SavedTensorsAreReleasedAfterBackward) {
  Tensor a = leaf({1, 2, 3}, {3});
  Tensor b = leaf({4, 5, 6}, {3});
  const long before = a.impl().storage.use_count();
  Tensor y = sum(mul(a, b));  // mul saves (views of) both inputs
  EXPECT_GT(a.impl().storage.use_count(), before);
  y.backward();
  EXPECT_EQ(a.impl().storage.use_count(), before);
  EXPECT_EQ(b.impl().storage.use_count(), before);
  // The nodes themselves are emptied: no edges left.
  EXPECT_TRUE(y.grad_fn()->next.empty());
}

TEST(Engine, DroppedGraphIsFreedWithoutBackward) {
  // Every op's output must not keep itself alive through its own backward closure (a
  // shared_ptr cycle would leak the whole graph of every evaluation run with grad on).
  Generator gen(1);
  Tensor x = Tensor::randn({3, 4}, gen, DType::f64).set_requires_grad(true);
  Tensor w = Tensor::randn({4}, gen, DType::f64).set_requires_grad(true);
  const long before = x.impl().storage.use_count();
  std::vector<std::function<Tensor()>> ops = {
      [&] { return softmax(x, -1); },
      [&] { return softmax(x, 0); },
      [&] { return log_softmax(x, -1); },
      [&] { return l2_normalize(x, -1); },
      [&] { return l2_normalize(x, 0); },
      [&] { return layer_norm(x, w, w); },
      [&] { return exp(x); },
      [&] { return div(x, x); },
      [&] { return matmul(x, x.t()); },
      [&] { return linear(x, x, w.slice(0, 0, 3)); },
      [&] { return max(x, 0); },
      [&] { return sum(x, {1}); },
      [&] { return x.t().contiguous(); },
      [&] { return scaled_dot_product_attention(x.reshape({1, 1, 3, 4}), x.reshape({1, 1, 3, 4}),
                                                x.reshape({1, 1, 3, 4})); },
      [&] { return cross_entropy(x, Tensor::from_vector<int32_t>({0, 1, 3}, {3})); },
  };
  for (size_t i = 0; i < ops.size(); ++i) {
    std::weak_ptr<TensorImpl> out_impl;
    std::weak_ptr<Node> node;
    {
      Tensor y = ops[i]();
      ASSERT_TRUE(y.requires_grad()) << "op " << i;
      out_impl = y.impl_ptr();
      node = y.grad_fn();
    }
    EXPECT_TRUE(out_impl.expired()) << "output of op " << i << " is kept alive by its own graph";
    EXPECT_TRUE(node.expired()) << "node of op " << i << " (" << (node.lock() ? node.lock()->name : "") << ") leaked";
    EXPECT_EQ(x.impl().storage.use_count(), before) << "op " << i << " left a saved input behind";
  }
}

TEST(Engine, DetachStopsGradients) {
  Tensor x = leaf({1, 2}, {2});
  Tensor d = x.detach();
  EXPECT_FALSE(d.requires_grad());
  EXPECT_EQ(d.impl().storage.get(), x.impl().storage.get());
  // y = x * detach(x): only the first factor carries gradient.
  sum(mul(x, d)).backward();
  EXPECT_TRUE(all_close(x.grad(), {2}, {1, 2}, 0));
  // A graph made only of detached values has nothing to differentiate.
  EXPECT_FALSE(exp(d).requires_grad());
}

TEST(Engine, NonScalarBackwardNeedsAGradient) {
  Tensor x = leaf({1, 2}, {2});
  Tensor y = mul_scalar(x, 2.0);
  EXPECT_THROW(y.backward(), Error);
  EXPECT_THROW(y.backward(Tensor::ones({3}, DType::f64)), Error);
  EXPECT_THROW(y.backward(Tensor::ones({2}, DType::f32)), Error);  // dtype must match too
  y.backward(Tensor::from_vector<double>({1, 10}, {2}));
  EXPECT_TRUE(all_close(x.grad(), {2}, {2, 20}, 0));
}

TEST(Engine, BackwardFromALeafAndGradOfOtherDtype) {
  Tensor x = leaf({1, 2}, {2});
  x.backward(Tensor::from_vector<double>({3, 4}, {2}));
  EXPECT_TRUE(all_close(x.grad(), {2}, {3, 4}, 0));
  // A float32 leaf used through to(f64): its gradient comes back as float32.
  Tensor f = Tensor::from_vector<float>({1.5f, -2.0f}, {2}).set_requires_grad(true);
  sum(mul(f.to(DType::f64), f.to(DType::f64))).backward();
  EXPECT_EQ(f.grad().dtype(), DType::f32);
  EXPECT_TRUE(all_close(f.grad(), {2}, {3.0, -4.0}, 0));
}

TEST(Engine, OnlyInputsThatRequireGradGetOne) {
  Tensor a = leaf({1, 2}, {2});
  Tensor b = Tensor::from_vector<double>({3, 4}, {2});
  sum(mul(a, b)).backward();
  EXPECT_TRUE(all_close(a.grad(), {2}, {3, 4}, 0));
  EXPECT_FALSE(b.grad().defined());
}

TEST(Engine, IntegerTensorsCannotRequireGrad) {
  EXPECT_THROW(Tensor::arange(3).set_requires_grad(true), Error);
  Tensor x = leaf({1}, {1});
  Tensor y = exp(x);
  EXPECT_THROW(y.set_requires_grad(false), Error);  // non-leaf: use detach()
}

TEST(Engine, DeepChainDoesNotRecurse) {
  // The engine's sort is iterative: a long chain must not overflow the stack.
  Tensor x = leaf({1.0}, {1});
  Tensor y = x;
  for (int i = 0; i < 20000; ++i) y = add_scalar(y, 1e-4);
  y.backward();
  EXPECT_TRUE(all_close(x.grad(), {1}, {1.0}, 0));
}
