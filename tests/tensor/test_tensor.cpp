#include <gtest/gtest.h>

#include "coca/autograd/ops.h"

using namespace coca;

TEST(Tensor, Smoke) {
  Generator gen(1);
  Tensor a = Tensor::randn({3, 4}, gen);
  EXPECT_EQ(a.numel(), 12);
}
