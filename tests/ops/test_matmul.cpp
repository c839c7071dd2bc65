// matmul (2-D, batched, broadcast batch, transposed and strided operand views) and linear.
#include <gtest/gtest.h>

#include "coca/kernels/cpu/blas_select.h"
#include "coca/autograd/ops.h"
#include "common/gradcheck.h"
#include "common/test_util.h"

using namespace coca;
using namespace coca::testing;
using In = std::vector<Tensor>;

namespace {

// Plain triple loop over broadcast batch dims: a [..., M, K] @ b [..., K, N].
std::vector<double> ref_matmul(const Tensor& a, const Tensor& b, Shape& out_shape) {
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  const Shape ba(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
  const size_t nb = std::max(ba.size(), bb.size());
  Shape batch(nb);
  for (size_t i = 0; i < nb; ++i) {
    const int64_t x = i < nb - ba.size() ? 1 : ba[i - (nb - ba.size())];
    const int64_t y = i < nb - bb.size() ? 1 : bb[i - (nb - bb.size())];
    batch[i] = x == 1 ? y : x;
  }
  out_shape = batch;
  out_shape.push_back(M);
  out_shape.push_back(N);
  const auto va = a.to_double_vector(), vb = b.to_double_vector();
  std::vector<double> out(shape_numel(out_shape), 0.0);
  for (int64_t bi = 0; bi < shape_numel(batch); ++bi) {
    const Shape bidx = unravel_index(bi, batch);
    const int64_t ao = broadcast_source(bidx, ba) * M * K, bo = broadcast_source(bidx, bb) * K * N;
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double s = 0;
        for (int64_t k = 0; k < K; ++k) s += va[ao + i * K + k] * vb[bo + k * N + j];
        out[(bi * M + i) * N + j] = s;
      }
  }
  return out;
}

template <typename T>
class MatmulForward : public ::testing::Test {};
using FloatTypes = ::testing::Types<float, double>;
TYPED_TEST_SUITE(MatmulForward, FloatTypes);

// Operand variants with the same logical [R, C] values: contiguous, a transposed view, a
// row-strided slice, a column-strided slice (neither last stride 1: must be copied).
std::vector<std::pair<const char*, Tensor>> variants(const Shape& s, DType dt, Generator& gen) {
  const int64_t R = s[s.size() - 2], C = s.back();
  Shape lead(s.begin(), s.end() - 2);
  std::vector<std::pair<const char*, Tensor>> v;
  v.push_back({"contiguous", uniform(s, dt, gen)});
  Shape ts = lead;
  ts.push_back(C);
  ts.push_back(R);
  v.push_back({"transposed", uniform(ts, dt, gen).transpose(-2, -1)});
  Shape wide = lead;
  wide.push_back(R);
  wide.push_back(C + 3);
  v.push_back({"row-strided", uniform(wide, dt, gen).slice(-1, 1, C + 1)});
  Shape both = lead;
  both.push_back(R);
  both.push_back(C);
  both.push_back(2);
  v.push_back({"no unit stride", uniform(both, dt, gen).select(-1, 1)});
  return v;
}

}  // namespace

TYPED_TEST(MatmulForward, TwoDAllOperandLayouts) {
  const DType dt = dtype_of<TypeParam>::value;
  Generator gen(1);
  const int64_t M = 7, K = 13, N = 5;
  for (auto& [an, a] : variants({M, K}, dt, gen))
    for (auto& [bn, b] : variants({K, N}, dt, gen)) {
      COCA_CASE("a " << an << ", b " << bn);
      Shape os;
      auto want = ref_matmul(a, b, os);
      EXPECT_TRUE(all_close(matmul(a, b), os, want, fwd_tol<TypeParam>()));
    }
}

TYPED_TEST(MatmulForward, VectorLikeShapes) {
  // Dims of size 1 make BLAS leading dimensions easy to get wrong (they must be >= the row
  // length even where the stride is meaningless).
  const DType dt = dtype_of<TypeParam>::value;
  Generator gen(11);
  const std::vector<std::pair<Shape, Shape>> cases = {{{1, 6}, {6, 4}}, {{5, 6}, {6, 1}}, {{1, 6}, {6, 1}},
                                                       {{5, 1}, {1, 4}}, {{1, 1}, {1, 1}}, {{3, 1, 6}, {3, 6, 1}}};
  for (const auto& [sa, sb] : cases)
    for (auto& [an, a] : variants(sa, dt, gen))
      for (auto& [bn, b] : variants(sb, dt, gen)) {
        COCA_CASE(shape_str(sa) << " " << an << " @ " << shape_str(sb) << " " << bn);
        Shape os;
        auto want = ref_matmul(a, b, os);
        EXPECT_TRUE(all_close(matmul(a, b), os, want, fwd_tol<TypeParam>()));
      }
}

TYPED_TEST(MatmulForward, BatchedAndBroadcast) {
  const DType dt = dtype_of<TypeParam>::value;
  Generator gen(2);
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{3, 4, 6}, {3, 6, 5}},    {{2, 3, 4, 6}, {6, 5}},  {{4, 6}, {2, 6, 5}},   {{2, 1, 4, 6}, {3, 6, 5}},
      {{1, 4, 6}, {3, 6, 5}},    {{2, 3, 1, 6}, {6, 1}},  {{5, 4, 6}, {5, 6, 1}},
  };
  for (const auto& [sa, sb] : cases)
    for (auto& [an, a] : variants(sa, dt, gen)) {
      for (auto& [bn, b] : variants(sb, dt, gen)) {
        COCA_CASE(shape_str(sa) << " " << an << " @ " << shape_str(sb) << " " << bn);
        Shape os;
        auto want = ref_matmul(a, b, os);
        EXPECT_TRUE(all_close(matmul(a, b), os, want, fwd_tol<TypeParam>()));
      }
    }
}

TYPED_TEST(MatmulForward, BatchOfQueriesAgainstKeysView) {
  // The attention-style product: q [B, H, T, D] and k [B, H, S, D] as views of [B, T, H, D]
  // storage, q @ k^T with k^T a transposed view.
  const DType dt = dtype_of<TypeParam>::value;
  Generator gen(3);
  Tensor qs = uniform({2, 5, 3, 4}, dt, gen), ks = uniform({2, 6, 3, 4}, dt, gen);
  Tensor q = qs.transpose(1, 2), k = ks.transpose(1, 2);
  Shape os;
  auto want = ref_matmul(q, k.transpose(-2, -1), os);
  EXPECT_TRUE(all_close(matmul(q, k.transpose(-2, -1)), os, want, fwd_tol<TypeParam>()));
}

TYPED_TEST(MatmulForward, LargeEnoughForThreadedBlas) {
  const DType dt = dtype_of<TypeParam>::value;
  Generator gen(4);
  Tensor a = uniform({96, 200}, dt, gen), b = uniform({120, 200}, dt, gen).t();
  Shape os;
  auto want = ref_matmul(a, b, os);
  EXPECT_TRUE(all_close(matmul(a, b), os, want, 4 * fwd_tol<TypeParam>()));
  Tensor batched_a = uniform({6, 40, 50}, dt, gen);  // many small: one BLAS call per thread
  Tensor batched_b = uniform({6, 50, 30}, dt, gen);
  want = ref_matmul(batched_a, batched_b, os);
  EXPECT_TRUE(all_close(matmul(batched_a, batched_b), os, want, fwd_tol<TypeParam>()));
  Tensor two_big_a = uniform({2, 130, 140}, dt, gen);  // a few large: threaded BLAS per matrix
  Tensor two_big_b = uniform({2, 150, 140}, dt, gen).transpose(1, 2);
  want = ref_matmul(two_big_a, two_big_b, os);
  EXPECT_TRUE(all_close(matmul(two_big_a, two_big_b), os, want, 4 * fwd_tol<TypeParam>()));
}

TYPED_TEST(MatmulForward, EmptyInnerDimensionGivesZeros) {
  const DType dt = dtype_of<TypeParam>::value;
  Tensor a = Tensor::empty({3, 0}, dt), b = Tensor::empty({0, 4}, dt);
  EXPECT_TRUE(all_close(matmul(a, b), {3, 4}, std::vector<double>(12, 0.0), 0));
}

TYPED_TEST(MatmulForward, Linear) {
  const DType dt = dtype_of<TypeParam>::value;
  Generator gen(5);
  const int64_t in = 9, out = 6;
  Tensor w = uniform({out, in}, dt, gen), bias = uniform({out}, dt, gen);
  for (const Shape& xs : {Shape{4, in}, Shape{2, 3, in}, Shape{1, in}}) {
    for (bool with_bias : {false, true}) {
      for (bool transposed_x : {false, true}) {
        COCA_CASE(shape_str(xs) << (with_bias ? " with bias" : "") << (transposed_x ? " x transposed" : ""));
        Tensor x = uniform(xs, dt, gen);
        if (transposed_x) {
          Shape ts = xs;
          std::swap(ts[ts.size() - 1], ts[ts.size() - 2]);
          x = uniform(ts, dt, gen).transpose(-2, -1);
        }
        const auto vx = x.to_double_vector(), vw = w.to_double_vector(), vb = bias.to_double_vector();
        const int64_t R = x.numel() / in;
        std::vector<double> want(R * out);
        for (int64_t r = 0; r < R; ++r)
          for (int64_t o = 0; o < out; ++o) {
            double s = with_bias ? vb[o] : 0.0;
            for (int64_t i = 0; i < in; ++i) s += vx[r * in + i] * vw[o * in + i];
            want[r * out + o] = s;
          }
        Shape os = xs;
        os.back() = out;
        EXPECT_TRUE(all_close(linear(x, w, with_bias ? bias : Tensor()), os, want, fwd_tol<TypeParam>()));
      }
    }
  }
  // A transposed weight view ([in, out] storage) works the same.
  Tensor wt = w.t().contiguous().t();
  Tensor x = uniform({3, in}, dt, gen);
  EXPECT_TRUE(all_close(linear(x, wt, bias), {3, out}, linear(x, w, bias).to_double_vector(), fwd_tol<TypeParam>()));
}

// ---- gradients ---------------------------------------------------------------------

TEST(MatmulGrad, AllLayoutsAndBroadcasts) {
  Generator gen(6);
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{4, 3}, {3, 5}}, {{2, 4, 3}, {2, 3, 5}}, {{2, 2, 4, 3}, {3, 5}}, {{4, 3}, {2, 3, 5}}, {{2, 1, 4, 3}, {3, 3, 2}},
  };
  for (const auto& [sa, sb] : cases) {
    COCA_CASE(shape_str(sa) << " @ " << shape_str(sb));
    Tensor a = uniform(sa, DType::f64, gen).set_requires_grad(true);
    Tensor b = uniform(sb, DType::f64, gen).set_requires_grad(true);
    EXPECT_TRUE(gradcheck([](const In& in) { return matmul(in[0], in[1]); }, {a, b}));
    // Transposed and strided leaves.
    EXPECT_TRUE(gradcheck([](const In& in) { return matmul(in[0], in[1]); },
                          {transposed_leaf(a), strided_leaf(b)}));
  }
  // Operands that are views made inside the function: their gradient goes through the view.
  Tensor x = uniform({5, 4}, DType::f64, gen).set_requires_grad(true);
  Tensor y = uniform({6, 4}, DType::f64, gen).set_requires_grad(true);
  EXPECT_TRUE(gradcheck([](const In& in) { return matmul(in[0], in[1].t()); }, {x, y}));
  EXPECT_TRUE(gradcheck([](const In& in) { return matmul(in[0].t(), in[0].slice(1, 1, 3)); }, {x}));
  EXPECT_TRUE(gradcheck([](const In& in) { return matmul(in[0].reshape({2, 3, 4}), in[1].t()); },
                        {uniform({6, 4}, DType::f64, gen).set_requires_grad(true), y}));
}

TEST(MatmulGrad, OnlyOneSideRequiresGrad) {
  Generator gen(7);
  Tensor a = uniform({3, 4}, DType::f64, gen).set_requires_grad(true);
  Tensor b = uniform({4, 2}, DType::f64, gen);
  EXPECT_TRUE(gradcheck([&](const In& in) { return matmul(in[0], b); }, {a}));
  EXPECT_TRUE(gradcheck([&](const In& in) { return matmul(b.t(), in[0].t()); }, {a}));
}

TEST(MatmulGrad, Linear) {
  Generator gen(8);
  Tensor w = uniform({5, 4}, DType::f64, gen).set_requires_grad(true);
  Tensor bias = uniform({5}, DType::f64, gen).set_requires_grad(true);
  for (const Shape& xs : {Shape{3, 4}, Shape{2, 3, 4}}) {
    COCA_CASE(shape_str(xs));
    Tensor x = uniform(xs, DType::f64, gen).set_requires_grad(true);
    EXPECT_TRUE(gradcheck([](const In& in) { return linear(in[0], in[1], in[2]); }, {x, w, bias}));
    EXPECT_TRUE(gradcheck([](const In& in) { return linear(in[0], in[1]); }, {x, w}));
    EXPECT_TRUE(gradcheck([](const In& in) { return linear(in[0], in[1], in[2]); },
                          {transposed_leaf(x), transposed_leaf(w), strided_leaf(bias)}));
  }
  // Non-contiguous 3-D input (a permuted view), only the weight requiring grad.
  Tensor x3 = uniform({4, 2, 3}, DType::f64, gen);
  EXPECT_TRUE(gradcheck([&](const In& in) { return linear(x3.permute({1, 2, 0}), in[0]); }, {w}));
}

// OpenBLAS's fallback for a CPU model it does not know is replaced by the kernels the CPU's
// features allow; a core it chose itself, or a CPU without AVX2, is left alone.
TEST(BlasSelect, GenericFallbackIsReplacedByWhatTheCpuCanRun) {
  EXPECT_STREQ(coca::cpu::better_blas_core("Prescott", true, true), "SkylakeX");
  EXPECT_STREQ(coca::cpu::better_blas_core("Prescott", false, true), "Haswell");
  EXPECT_STREQ(coca::cpu::better_blas_core("Sandybridge", false, true), "Haswell");
  EXPECT_EQ(coca::cpu::better_blas_core("Prescott", false, false), nullptr);
  EXPECT_EQ(coca::cpu::better_blas_core("Haswell", true, true), nullptr);
  EXPECT_EQ(coca::cpu::better_blas_core("SkylakeX", true, true), nullptr);
  EXPECT_EQ(coca::cpu::better_blas_core("Zen", true, true), nullptr);
  EXPECT_FALSE(coca::cpu::blas_core_name().empty());
}
