// scaled_dot_product_attention: forward against a plain-loop reference with every mask kind
// (additive [T, S] and [B, T, S], causal with T == S, T < S and T > S, key padding, fully
// masked rows), strided q/k/v views; gradients by finite differences.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "coca/autograd/ops.h"
#include "common/gradcheck.h"
#include "common/test_util.h"

using namespace coca;
using namespace coca::testing;
using In = std::vector<Tensor>;

namespace {

// out [B, H, T, D] (logical). A row whose keys are all masked gives zeros.
std::vector<double> ref_attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionMask& mask,
                                  double scale) {
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3), S = k.size(2);
  if (scale <= 0) scale = 1.0 / std::sqrt(static_cast<double>(D));
  const auto vq = q.to_double_vector(), vk = k.to_double_vector(), vv = v.to_double_vector();
  std::vector<double> add, pad;
  if (mask.additive.defined()) add = mask.additive.to_double_vector();
  if (mask.key_padding.defined()) pad = mask.key_padding.to_double_vector();
  std::vector<double> out(B * H * T * D, 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < T; ++i) {
        std::vector<double> s(S);
        std::vector<bool> visible(S, true);
        for (int64_t j = 0; j < S; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += vq[((b * H + h) * T + i) * D + d] * vk[((b * H + h) * S + j) * D + d];
          s[j] = scale * dot;
          if (!add.empty()) s[j] += mask.additive.dim() == 2 ? add[i * S + j] : add[(b * T + i) * S + j];
          if (!pad.empty() && pad[b * S + j] != 0) visible[j] = false;
          if (mask.causal && j > i + (S - T)) visible[j] = false;
          if (s[j] == -std::numeric_limits<double>::infinity()) visible[j] = false;
        }
        double m = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < S; ++j)
          if (visible[j]) m = std::max(m, s[j]);
        if (m == -std::numeric_limits<double>::infinity()) continue;  // fully masked: zeros
        double z = 0;
        for (int64_t j = 0; j < S; ++j)
          if (visible[j]) z += std::exp(s[j] - m);
        for (int64_t j = 0; j < S; ++j) {
          if (!visible[j]) continue;
          const double p = std::exp(s[j] - m) / z;
          for (int64_t d = 0; d < D; ++d) out[((b * H + h) * T + i) * D + d] += p * vv[((b * H + h) * S + j) * D + d];
        }
      }
  return out;
}

struct Qkv {
  Tensor q, k, v;
};

// q [B, H, T, D] and k, v [B, H, S, D] as the strided views a fused projection produces.
Qkv make_qkv(int64_t B, int64_t H, int64_t T, int64_t S, int64_t D, DType dt, Generator& gen) {
  Tensor qs = uniform({B, T, H, D}, dt, gen, -1.5, 1.5);
  Tensor kv = uniform({B, S, 2, H, D}, dt, gen, -1.5, 1.5);
  return {qs.transpose(1, 2), kv.select(2, 0).transpose(1, 2), kv.select(2, 1).transpose(1, 2)};
}

template <typename T>
class AttentionForward : public ::testing::Test {};
using FloatTypes = ::testing::Types<float, double>;
TYPED_TEST_SUITE(AttentionForward, FloatTypes);

struct MaskCase {
  const char* name;
  int64_t T, S;
  std::function<AttentionMask(int64_t B, int64_t T, int64_t S, DType dt, Generator& gen)> make;
};

Tensor padding(const std::vector<int32_t>& v, int64_t B, int64_t S, DType dt) {
  return Tensor::from_vector<int32_t>(v, {B, S}).to(dt);
}

// B = 2 throughout; padding masks are written for S = 5.
const std::vector<MaskCase>& mask_cases() {
  static const std::vector<MaskCase> cases = {
      {"none, T < S", 3, 5, [](int64_t, int64_t, int64_t, DType, Generator&) { return AttentionMask{}; }},
      {"none, T > S", 6, 4, [](int64_t, int64_t, int64_t, DType, Generator&) { return AttentionMask{}; }},
      {"causal T == S", 5, 5, [](int64_t, int64_t, int64_t, DType, Generator&) { return AttentionMask{true, {}, {}}; }},
      {"causal T < S", 3, 5, [](int64_t, int64_t, int64_t, DType, Generator&) { return AttentionMask{true, {}, {}}; }},
      {"causal T > S (first rows see nothing)", 6, 3,
       [](int64_t, int64_t, int64_t, DType, Generator&) { return AttentionMask{true, {}, {}}; }},
      {"additive [T, S]", 4, 5,
       [](int64_t, int64_t T, int64_t S, DType dt, Generator& g) { return AttentionMask{false, uniform({T, S}, dt, g, -2, 2), {}}; }},
      {"additive [B, T, S]", 4, 5,
       [](int64_t B, int64_t T, int64_t S, DType dt, Generator& g) {
         return AttentionMask{false, uniform({B, T, S}, dt, g, -2, 2), {}};
       }},
      {"additive with -inf (a fully masked row)", 3, 5,
       [](int64_t, int64_t T, int64_t S, DType dt, Generator& g) {
         Tensor m = uniform({T, S}, dt, g, -2, 2);
         m.select(0, 1).fill_(-std::numeric_limits<double>::infinity());
         m.select(1, 0).fill_(-std::numeric_limits<double>::infinity());
         return AttentionMask{false, m, {}};
       }},
      {"key padding u8", 4, 5,
       [](int64_t B, int64_t, int64_t S, DType, Generator&) {
         return AttentionMask{false, {}, padding({0, 0, 1, 0, 1, 1, 0, 0, 0, 0}, B, S, DType::u8)};
       }},
      {"key padding i32, one batch fully padded", 4, 5,
       [](int64_t B, int64_t, int64_t S, DType, Generator&) {
         return AttentionMask{false, {}, padding({2, 0, 0, 0, 7, 1, 1, 1, 1, 1}, B, S, DType::i32)};
       }},
      {"causal + padding + additive [B, T, S]", 5, 5,
       [](int64_t B, int64_t T, int64_t S, DType dt, Generator& g) {
         return AttentionMask{true, uniform({B, T, S}, dt, g, -1, 1), padding({1, 0, 0, 1, 0, 0, 0, 1, 0, 0}, B, S, DType::u8)};
       }},
  };
  return cases;
}

}  // namespace

TYPED_TEST(AttentionForward, EveryMaskKind) {
  const DType dt = dtype_of<TypeParam>::value;
  Generator gen(1);
  // H = 2 == B makes a [B, T, S] mask misread as [H, T, S] visible, H = 3 makes it throw.
  for (int64_t H : {2, 3}) {
    for (const MaskCase& c : mask_cases()) {
      COCA_CASE(c.name << ", H " << H);
      const int64_t B = 2, D = 4;
      Qkv x = make_qkv(B, H, c.T, c.S, D, dt, gen);
      AttentionMask mask = c.make(B, c.T, c.S, dt, gen);
      Tensor out = scaled_dot_product_attention(x.q, x.k, x.v, mask);
      EXPECT_TRUE(all_close(out, {B, H, c.T, D}, ref_attention(x.q, x.k, x.v, mask, -1), fwd_tol<TypeParam>()));
    }
  }
}

TYPED_TEST(AttentionForward, ScaleLayoutAndContiguousInputs) {
  const DType dt = dtype_of<TypeParam>::value;
  Generator gen(2);
  const int64_t B = 2, H = 3, T = 4, S = 6, D = 5;
  Tensor q = uniform({B, H, T, D}, dt, gen), k = uniform({B, H, S, D}, dt, gen), v = uniform({B, H, S, D}, dt, gen);
  Tensor out = scaled_dot_product_attention(q, k, v, {}, 0.7);
  EXPECT_TRUE(all_close(out, {B, H, T, D}, ref_attention(q, k, v, {}, 0.7), fwd_tol<TypeParam>()));
  // [B, H, T, D] stored as [B, T, H, D]: merging the heads is a free view.
  EXPECT_TRUE(out.transpose(1, 2).is_contiguous());
  Tensor merged = out.transpose(1, 2).reshape({B, T, H * D});
  EXPECT_EQ(merged.impl().storage.get(), out.impl().storage.get());
}

TYPED_TEST(AttentionForward, DegenerateStrides) {
  // One query row broadcast over T (row stride 0), a single key (T or S = 1 with odd strides),
  // and a head dim that is not unit-stride.
  const DType dt = dtype_of<TypeParam>::value;
  Generator gen(3);
  const int64_t B = 2, H = 2, T = 3, S = 4, D = 3;
  Tensor q1 = uniform({B, H, 1, D}, dt, gen);
  Tensor q = q1.expand({B, H, T, D});
  Tensor k = uniform({B, H, S, D}, dt, gen), v = uniform({B, H, S, D}, dt, gen);
  EXPECT_TRUE(all_close(scaled_dot_product_attention(q, k, v), {B, H, T, D}, ref_attention(q, k, v, {}, -1),
                        fwd_tol<TypeParam>()));
  Tensor k1 = uniform({B, 1, H, D}, dt, gen).permute({0, 2, 1, 3});  // S = 1, stride(2) = D * H
  Tensor v1 = uniform({B, H, D}, dt, gen).unsqueeze(2);
  Tensor k1s = make_view(k1, k1.shape(), {k1.stride(0), k1.stride(1), 0, 1}, k1.impl().offset);  // stride(2) = 0
  EXPECT_TRUE(all_close(scaled_dot_product_attention(q, k1s, v1), {B, H, T, D}, ref_attention(q, k1, v1, {}, -1),
                        fwd_tol<TypeParam>()));
  Tensor qd = uniform({B, H, T, D, 2}, dt, gen).select(-1, 0);  // stride(-1) == 2
  EXPECT_TRUE(all_close(scaled_dot_product_attention(qd, k, v), {B, H, T, D}, ref_attention(qd, k, v, {}, -1),
                        fwd_tol<TypeParam>()));
}

TYPED_TEST(AttentionForward, NoKeysGivesZeros) {
  const DType dt = dtype_of<TypeParam>::value;
  Generator gen(4);
  Tensor q = uniform({1, 2, 3, 4}, dt, gen), k = Tensor::empty({1, 2, 0, 4}, dt), v = Tensor::empty({1, 2, 0, 4}, dt);
  EXPECT_TRUE(all_close(scaled_dot_product_attention(q, k, v), {1, 2, 3, 4}, std::vector<double>(24, 0.0), 0.0));
}

TYPED_TEST(AttentionForward, LargerBatchRunsInParallel) {
  const DType dt = dtype_of<TypeParam>::value;
  Generator gen(5);
  Qkv x = make_qkv(3, 4, 17, 23, 8, dt, gen);
  AttentionMask mask{true, uniform({17, 23}, dt, gen), {}};
  EXPECT_TRUE(all_close(scaled_dot_product_attention(x.q, x.k, x.v, mask), {3, 4, 17, 8},
                        ref_attention(x.q, x.k, x.v, mask, -1), fwd_tol<TypeParam>()));
}

// ---- gradients ---------------------------------------------------------------------

TEST(AttentionGrad, EveryMaskKind) {
  Generator gen(6);
  for (const MaskCase& c : mask_cases()) {
    COCA_CASE(c.name);
    const int64_t B = 2, H = 2, D = 3;
    Tensor q = uniform({B, H, c.T, D}, DType::f64, gen, -1.5, 1.5).set_requires_grad(true);
    Tensor k = uniform({B, H, c.S, D}, DType::f64, gen, -1.5, 1.5).set_requires_grad(true);
    Tensor v = uniform({B, H, c.S, D}, DType::f64, gen, -1.5, 1.5).set_requires_grad(true);
    AttentionMask mask = c.make(B, c.T, c.S, DType::f64, gen);
    EXPECT_TRUE(gradcheck([&](const In& in) { return scaled_dot_product_attention(in[0], in[1], in[2], mask); },
                          {q, k, v}));
  }
}

TEST(AttentionGrad, StridedViewsOfOneProjection) {
  // q, k, v sliced out of one [B, T, 3, H, D] tensor: their gradients land in one leaf.
  Generator gen(7);
  const int64_t B = 2, T = 4, H = 2, D = 3;
  Tensor qkv = uniform({B, T, 3, H, D}, DType::f64, gen).set_requires_grad(true);
  auto f = [&](const In& in) {
    Tensor q = in[0].select(2, 0).transpose(1, 2), k = in[0].select(2, 1).transpose(1, 2),
           v = in[0].select(2, 2).transpose(1, 2);
    return scaled_dot_product_attention(q, k, v, AttentionMask{true, {}, {}}).transpose(1, 2).reshape({B, T, H * D});
  };
  EXPECT_TRUE(gradcheck(f, {qkv}));
  // Only k requiring grad, with a custom scale.
  Tensor q = uniform({1, 2, 3, D}, DType::f64, gen), v = uniform({1, 2, 5, D}, DType::f64, gen);
  Tensor k = transposed_leaf(uniform({1, 2, 5, D}, DType::f64, gen));
  EXPECT_TRUE(gradcheck([&](const In& in) { return scaled_dot_product_attention(q, in[0], v, {}, 0.3); }, {k}));
}
