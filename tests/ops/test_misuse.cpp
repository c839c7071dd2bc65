// Misuse: every op rejects bad shapes, dtypes and devices with a coca::Error whose message names
// the op and the operands' shapes, so that a failing model line can be found from the log.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

#include "coca/autograd/ops.h"
#include "coca/kernels/cuda/runtime.h"
#include "common/test_util.h"

using namespace coca;

namespace {

// Runs f, expects a coca::Error whose what() contains every one of `parts`.
::testing::AssertionResult throws_naming(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
  } catch (const Error& e) {
    const std::string msg = e.what();
    if (std::getenv("COCA_PRINT_ERRORS")) std::printf("%s\n", msg.c_str());
    for (const std::string& p : parts)
      if (msg.find(p) == std::string::npos)
        return ::testing::AssertionFailure() << "message \"" << msg << "\" does not contain \"" << p << "\"";
    return ::testing::AssertionSuccess();
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw a non-coca exception: " << e.what();
  }
  return ::testing::AssertionFailure() << "did not throw";
}

Tensor f32(const Shape& s) { return Tensor::ones(s, DType::f32); }
Tensor f64(const Shape& s) { return Tensor::ones(s, DType::f64); }
Tensor i32(const std::vector<int32_t>& v) { return Tensor::from_vector<int32_t>(v, {static_cast<int64_t>(v.size())}); }

}  // namespace

TEST(Misuse, ElementwiseShapeAndDtype) {
  EXPECT_TRUE(throws_naming([] { add(f32({2, 3}), f32({4, 3})); }, {"add", "[2, 3]", "[4, 3]"}));
  EXPECT_TRUE(throws_naming([] { mul(f32({2, 3}), f32({2})); }, {"mul", "[2, 3]", "[2]"}));
  EXPECT_TRUE(throws_naming([] { sub(f32({2, 3}), f64({2, 3})); }, {"sub", "f32[2, 3]", "f64[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { div(f64({3}), f32({3})); }, {"div", "f64[3]", "f32[3]"}));
  EXPECT_TRUE(throws_naming([] { exp(Tensor::arange(4)); }, {"exp", "i32[4]"}));
  EXPECT_TRUE(throws_naming([] { clamp(f32({2}), 1.0, -1.0); }, {"clamp"}));
  EXPECT_TRUE(throws_naming([] { add(Tensor(), f32({2})); }, {"add", "undefined"}));
}

TEST(Misuse, Matmul) {
  EXPECT_TRUE(throws_naming([] { matmul(f32({2, 3}), f32({4, 5})); }, {"matmul", "f32[2, 3]", "f32[4, 5]"}));
  EXPECT_TRUE(throws_naming([] { matmul(f32({2, 3}), f64({3, 5})); }, {"matmul", "f32[2, 3]", "f64[3, 5]"}));
  EXPECT_TRUE(throws_naming([] { matmul(f32({3}), f32({3, 2})); }, {"matmul", "f32[3]", "2 dimensions"}));
  EXPECT_TRUE(throws_naming([] { matmul(f32({2, 2, 3}), f32({3, 3, 4})); }, {"matmul", "f32[2, 2, 3]", "f32[3, 3, 4]"}));
  EXPECT_TRUE(throws_naming([] { matmul(Tensor::zeros({2, 2}, DType::i32), Tensor::zeros({2, 2}, DType::i32)); },
                            {"matmul", "i32[2, 2]"}));
  EXPECT_TRUE(throws_naming([] { linear(f32({4, 3}), f32({5, 2})); }, {"linear", "f32[4, 3]", "f32[5, 2]"}));
  EXPECT_TRUE(throws_naming([] { linear(f32({4, 3}), f32({5, 3}), f32({4})); }, {"linear", "f32[4]", "f32[5, 3]"}));
  EXPECT_TRUE(throws_naming([] { linear(f32({4, 3}), f32({5, 3}), f64({5})); }, {"linear", "f64[5]"}));
  EXPECT_TRUE(throws_naming([] { linear(f32({4, 3}), f32({3})); }, {"linear", "f32[3]"}));
}

TEST(Misuse, ReductionsAndSoftmax) {
  EXPECT_TRUE(throws_naming([] { sum(f32({2, 3}), {2}); }, {"sum", "dimension 2", "f32[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { sum(f32({2, 3}), {0, -2}); }, {"sum", "repeated", "f32[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { mean(f32({2, 3}), {-3}); }, {"mean", "dimension -3", "f32[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { max(f32({2, 3}), 5); }, {"max", "dimension 5", "f32[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { max(f32({2, 0}), 1); }, {"max", "f32[2, 0]"}));
  EXPECT_TRUE(throws_naming([] { max(Tensor::scalar(1.0), 0); }, {"max", "f32[]"}));
  EXPECT_TRUE(throws_naming([] { softmax(f32({2, 3}), 2); }, {"softmax", "dimension 2", "f32[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { log_softmax(Tensor::arange(3), 0); }, {"log_softmax", "i32[3]"}));
  EXPECT_TRUE(throws_naming([] { sum_to_shape(f32({2, 3}), {4}); }, {"sum_to_shape", "f32[2, 3]", "[4]"}));
}

TEST(Misuse, NormEmbeddingLoss) {
  EXPECT_TRUE(throws_naming([] { layer_norm(f32({2, 4}), f32({3}), Tensor()); }, {"layer_norm", "f32[3]", "f32[2, 4]"}));
  EXPECT_TRUE(throws_naming([] { layer_norm(f32({2, 4}), f64({4}), Tensor()); }, {"layer_norm", "f64[4]", "f32[2, 4]"}));
  EXPECT_TRUE(throws_naming([] { l2_normalize(f32({2, 4}), 3); }, {"l2_normalize", "dimension 3", "f32[2, 4]"}));
  EXPECT_TRUE(throws_naming([] { embedding(f32({5, 3}), i32({1, 9})); }, {"embedding", "index 9", "f32[5, 3]"}));
  EXPECT_TRUE(throws_naming([] { embedding(f32({5, 3}), i32({-1})); }, {"embedding", "index -1"}));
  EXPECT_TRUE(throws_naming([] { embedding(f32({5, 3}), f32({2})); }, {"embedding", "f32[2]", "i32"}));
  EXPECT_TRUE(throws_naming([] { embedding(f32({5}), i32({0})); }, {"embedding", "f32[5]"}));
  EXPECT_TRUE(throws_naming([] { cross_entropy(f32({3, 4}), i32({0, 7, 1})); }, {"cross_entropy", "target 7", "row 1"}));
  EXPECT_TRUE(throws_naming([] { cross_entropy(f32({3, 4}), i32({0, 1})); }, {"cross_entropy", "i32[2]", "f32[3, 4]"}));
  EXPECT_TRUE(throws_naming([] { cross_entropy(f32({3, 4, 2}), i32({0, 1, 2})); }, {"cross_entropy", "f32[3, 4, 2]"}));
  EXPECT_TRUE(throws_naming([] { cross_entropy(f32({3, 4}), f32({3})); }, {"cross_entropy", "f32[3]"}));
}

TEST(Misuse, Attention) {
  const char* op = "scaled_dot_product_attention";
  auto sdpa = [](const Tensor& q, const Tensor& k, const Tensor& v, AttentionMask m = {}) {
    return scaled_dot_product_attention(q, k, v, m);
  };
  EXPECT_TRUE(throws_naming([&] { sdpa(f32({1, 2, 3, 4}), f32({1, 2, 5, 8}), f32({1, 2, 5, 8})); },
                            {op, "f32[1, 2, 3, 4]", "f32[1, 2, 5, 8]"}));
  EXPECT_TRUE(throws_naming([&] { sdpa(f32({1, 2, 3, 4}), f32({1, 2, 5, 4}), f32({1, 2, 6, 4})); },
                            {op, "f32[1, 2, 6, 4]"}));
  EXPECT_TRUE(throws_naming([&] { sdpa(f32({2, 3, 4}), f32({2, 3, 4}), f32({2, 3, 4})); }, {op, "f32[2, 3, 4]"}));
  EXPECT_TRUE(throws_naming([&] { sdpa(f32({1, 2, 3, 4}), f64({1, 2, 5, 4}), f32({1, 2, 5, 4})); },
                            {op, "f32[1, 2, 3, 4]", "f64[1, 2, 5, 4]"}));
  EXPECT_TRUE(throws_naming([&] { sdpa(f32({1, 2, 3, 4}), f32({1, 2, 5, 4}), f32({1, 2, 5, 4}), {false, f32({3, 4}), {}}); },
                            {op, "f32[3, 4]", "[1, 2, 3, 5]"}));
  EXPECT_TRUE(throws_naming([&] { sdpa(f32({1, 2, 3, 4}), f32({1, 2, 5, 4}), f32({1, 2, 5, 4}), {false, f64({3, 5}), {}}); },
                            {op, "f64[3, 5]"}));
  EXPECT_TRUE(throws_naming([&] { sdpa(f32({1, 2, 3, 4}), f32({1, 2, 5, 4}), f32({1, 2, 5, 4}), {false, f32({5}), {}}); },
                            {op, "f32[5]"}));
  EXPECT_TRUE(throws_naming(
      [&] { sdpa(f32({2, 2, 3, 4}), f32({2, 2, 5, 4}), f32({2, 2, 5, 4}), {false, {}, Tensor::zeros({2, 4}, DType::u8)}); },
      {op, "u8[2, 4]", "[2, 5]"}));
}

TEST(Misuse, ShapeOpsAndViews) {
  EXPECT_TRUE(throws_naming([] { concat({f32({2, 3}), f32({3, 3})}, 1); }, {"concat", "f32[3, 3]", "f32[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { concat({f32({2, 3}), f64({2, 3})}, 0); }, {"concat", "f32[2, 3]", "f64[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { concat({}, 0); }, {"concat"}));
  EXPECT_TRUE(throws_naming([] { split(f32({2, 5}), {2, 2}, 1); }, {"split", "f32[2, 5]", "4"}));
  EXPECT_TRUE(throws_naming([] { f32({2, 3}).reshape({4, 2}); }, {"reshape", "f32[2, 3]", "[4, 2]"}));
  EXPECT_TRUE(throws_naming([] { f32({2, 3}).permute({0, 0}); }, {"permute", "f32[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { f32({2, 3}).permute({0}); }, {"permute", "f32[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { f32({2, 3}).slice(1, 2, 4); }, {"slice", "f32[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { f32({2, 3}).select(0, 2); }, {"select", "f32[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { f32({2, 3}).squeeze(0); }, {"squeeze", "f32[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { f32({2, 3}).unsqueeze(3); }, {"unsqueeze", "dimension 3", "f32[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { f32({2, 3}).size(2); }, {"size", "dimension 2", "f32[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { f32({2, 3}).expand({4, 3}); }, {"expand", "[2, 3]", "[4, 3]"}));
  EXPECT_TRUE(throws_naming([] { f32({2, 3}).transpose(0, 2); }, {"transpose", "dimension 2", "f32[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { f32({2}).data<double>(); }, {"data<f64>", "f32[2]"}));
  Generator g(1);
  EXPECT_TRUE(throws_naming([&] { dropout(f32({2}), 1.5, g); }, {"dropout", "1.5"}));
}

TEST(Misuse, Devices) {
  // Where the build and the machine have a GPU, a CUDA operand must be rejected by name;
  // otherwise making a CUDA tensor at all is the error, and it must say so.
  if (!cuda::built_with_cuda()) {
    EXPECT_TRUE(throws_naming([] { Tensor::empty({2}, DType::f32, Device::CUDA); }, {"CUDA"}));
    return;
  }
  if (cuda::device_count() == 0) {
    EXPECT_THROW(Tensor::empty({2}, DType::f32, Device::CUDA), Error);
    GTEST_SKIP() << "built with CUDA but no GPU here: device-mismatch messages not checkable";
  }
  Tensor gpu = Tensor::empty({2, 3}, DType::f32, Device::CUDA);
  EXPECT_EQ(gpu.describe(), "f32[2, 3]@cuda");
  EXPECT_TRUE(throws_naming([&] { add(f32({2, 3}), gpu); }, {"add", "f32[2, 3]@cuda"}));
  EXPECT_TRUE(throws_naming([&] { matmul(f32({3, 2}), gpu); }, {"matmul", "f32[2, 3]@cuda"}));
  EXPECT_TRUE(throws_naming([&] { layer_norm(gpu, Tensor(), Tensor()); }, {"layer_norm", "f32[2, 3]@cuda"}));
  EXPECT_TRUE(throws_naming([&] { softmax(gpu); }, {"softmax", "f32[2, 3]@cuda"}));
  EXPECT_TRUE(throws_naming([&] { concat({f32({2, 3}), gpu}, 0); }, {"concat", "f32[2, 3]@cuda"}));
  EXPECT_TRUE(throws_naming([&] { gpu.to_vector<float>(); }, {"to_vector", "f32[2, 3]@cuda"}));
}
