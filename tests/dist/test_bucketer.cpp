// GradientBucketer on its own: rank-averaged gradients, parameters that get a gradient on some
// ranks only or on none, or only in an early --accum-freq micro-batch, before and after the
// first-step reordering.
#include <gtest/gtest.h>

#include <functional>

#include "coca/autograd/ops.h"
#include "coca/dist/bucketer.h"
#include "dist_test.h"

using namespace coca;
using test::g_world;

TEST(GradientBucketer, AveragesAndHandlesMissingGradients) {
  const int W = g_world->size(), r = g_world->rank();
  Tensor a = Tensor::full({3}, 1.0, DType::f64).set_requires_grad(true);  // used on every rank
  Tensor b = Tensor::full({2}, 1.0, DType::f64).set_requires_grad(true);  // used on rank 0 only
  Tensor c = Tensor::full({4}, 1.0, DType::f64).set_requires_grad(true);  // never used
  dist::BucketOptions o;
  o.bucket_bytes = 16;  // one parameter per bucket
  dist::GradientBucketer grads(g_world, {{"a", a}, {"b", b}, {"c", c}}, o);
  EXPECT_EQ(grads.buckets().size(), 3u);
  for (int step = 0; step < 3; ++step) {  // steps 1 and 2 run on the reordered layout
    for (Tensor* t : {&a, &b, &c}) t->zero_grad();
    Tensor loss = sum(mul_scalar(a, r + 1.0));
    if (r == 0) loss = add(loss, sum(mul_scalar(b, 5.0)));
    loss.backward();
    grads.finish();
    for (double v : a.grad().to_double_vector()) EXPECT_DOUBLE_EQ(v, (W + 1) / 2.0) << "step " << step;
    for (double v : b.grad().to_double_vector()) EXPECT_DOUBLE_EQ(v, 5.0 / W) << "step " << step;
    for (double v : c.grad().to_double_vector()) EXPECT_EQ(v, 0.0) << "step " << step;
  }
  // After the first step the buckets follow the observed order: a and b (used) before c.
  EXPECT_EQ(grads.buckets().back().entries[0].name, "c");
}

TEST(GradientBucketer, SecondBucketerOnTheSameParameterIsAnError) {
  Tensor a = Tensor::zeros({2}, DType::f64).set_requires_grad(true);
  dist::GradientBucketer first(g_world, {{"a", a}});
  EXPECT_THROW(dist::GradientBucketer(g_world, {{"a", a}}), Error);
}

// --accum-freq: the trainer suspends the hooks on all but the last micro-batch, so gradients of
// the earlier ones only accumulate in .grad. A parameter that the last micro-batch does not
// reach (a branch taken only sometimes) must still contribute what it accumulated; only a
// parameter with no gradient at all counts as zero.
TEST(GradientBucketer, KeepsGradientsAccumulatedBeforeTheLastMicroBatch) {
  const int W = g_world->size(), r = g_world->rank();
  for (bool overlap : {true, false}) {
    Tensor a = Tensor::full({3}, 1.0, DType::f64).set_requires_grad(true);  // every micro-batch
    Tensor b = Tensor::full({2}, 1.0, DType::f64).set_requires_grad(true);  // first micro-batch only
    Tensor c = Tensor::full({4}, 1.0, DType::f64).set_requires_grad(true);  // never
    dist::BucketOptions o;
    o.bucket_bytes = 40;  // a and b share a bucket at first, c has its own
    o.overlap = overlap;
    dist::GradientBucketer grads(g_world, {{"a", a}, {"b", b}, {"c", c}}, o);
    for (int step = 0; step < 3; ++step) {  // steps 1 and 2 run on the reordered layout
      for (Tensor* t : {&a, &b, &c}) t->zero_grad();
      {  // micro-batch 0, hooks suspended as the trainer's SuspendHooks does
        std::vector<std::function<void(TensorImpl&)>> saved;
        for (Tensor* t : {&a, &b, &c}) saved.push_back(std::move(t->impl().post_accumulate_hook));
        for (Tensor* t : {&a, &b, &c}) t->impl().post_accumulate_hook = nullptr;
        add(sum(mul_scalar(a, 1.0)), sum(mul_scalar(b, r + 1.0))).backward();
        int i = 0;
        for (Tensor* t : {&a, &b, &c}) t->impl().post_accumulate_hook = std::move(saved[i++]);
      }
      sum(mul_scalar(a, 2.0)).backward();  // micro-batch 1 (the last): b gets nothing
      grads.finish();
      const std::string where = "overlap " + std::to_string(overlap) + " step " + std::to_string(step);
      for (double v : a.grad().to_double_vector()) EXPECT_DOUBLE_EQ(v, 3.0) << where;
      for (double v : b.grad().to_double_vector()) EXPECT_DOUBLE_EQ(v, (W + 1) / 2.0) << where;
      for (double v : c.grad().to_double_vector()) EXPECT_EQ(v, 0.0) << where;
    }
  }
}
