// layer_norm, l2_normalize, embedding and cross_entropy.
#include <gtest/gtest.h>

#include <cmath>

#include "coca/autograd/ops.h"
#include "common/gradcheck.h"
#include "common/test_util.h"

using namespace coca;
using namespace coca::testing;
using In = std::vector<Tensor>;

namespace {

std::vector<double> ref_layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, double eps) {
  const int64_t C = x.size(-1), R = x.numel() / C;
  const auto v = x.to_double_vector();
  const auto vw = w.defined() ? w.to_double_vector() : std::vector<double>(C, 1.0);
  const auto vb = b.defined() ? b.to_double_vector() : std::vector<double>(C, 0.0);
  std::vector<double> out(v.size());
  for (int64_t r = 0; r < R; ++r) {
    double m = 0, var = 0;
    for (int64_t c = 0; c < C; ++c) m += v[r * C + c];
    m /= C;
    for (int64_t c = 0; c < C; ++c) var += (v[r * C + c] - m) * (v[r * C + c] - m);
    var /= C;
    for (int64_t c = 0; c < C; ++c) out[r * C + c] = (v[r * C + c] - m) / std::sqrt(var + eps) * vw[c] + vb[c];
  }
  return out;
}

std::vector<double> ref_l2_normalize(const Tensor& x, int64_t dim, double eps) {
  dim = dim < 0 ? dim + x.dim() : dim;
  const Shape& s = x.shape();
  const auto v = x.to_double_vector();
  std::vector<double> out(v.size());
  for (int64_t i = 0; i < x.numel(); ++i) {
    Shape idx = unravel_index(i, s);
    double n = 0;
    for (int64_t j = 0; j < s[dim]; ++j) {
      Shape k = idx;
      k[dim] = j;
      n += v[ravel(k, s)] * v[ravel(k, s)];
    }
    out[i] = v[i] / std::max(std::sqrt(n), eps);
  }
  return out;
}

double ref_cross_entropy(const Tensor& logits, const std::vector<int32_t>& t, int64_t ignore, double normalizer) {
  const int64_t N = logits.size(0), C = logits.size(1);
  const auto v = logits.to_double_vector();
  double total = 0;
  int64_t count = 0;
  for (int64_t r = 0; r < N; ++r) {
    if (t[r] == ignore) continue;
    double m = v[r * C];
    for (int64_t c = 0; c < C; ++c) m = std::max(m, v[r * C + c]);
    double z = 0;
    for (int64_t c = 0; c < C; ++c) z += std::exp(v[r * C + c] - m);
    total += m + std::log(z) - v[r * C + t[r]];
    ++count;
  }
  const double denom = normalizer > 0 ? normalizer : static_cast<double>(count);
  return denom > 0 ? total / denom : 0.0;
}

template <typename T>
class NormForward : public ::testing::Test {};
using FloatTypes = ::testing::Types<float, double>;
TYPED_TEST_SUITE(NormForward, FloatTypes);

Tensor i32(const std::vector<int32_t>& v, const Shape& s) { return Tensor::from_vector<int32_t>(v, s); }

}  // namespace

TYPED_TEST(NormForward, LayerNorm) {
  const DType dt = dtype_of<TypeParam>::value;
  Generator gen(1);
  const int64_t C = 12;
  Tensor w = uniform({C}, dt, gen, 0.5, 1.5), b = uniform({C}, dt, gen);
  const std::vector<std::pair<const char*, Tensor>> inputs = {
      {"2-D", uniform({5, C}, dt, gen)},
      {"3-D offset", add_scalar(uniform({2, 3, C}, dt, gen), 5.0)},  // mean far from 0
      {"transposed", uniform({C, 4}, dt, gen).t()},
      {"sliced", uniform({4, C + 5}, dt, gen).slice(1, 2, C + 2)},
      {"many rows", uniform({3000, C}, dt, gen)},  // the parallel path
  };
  for (const auto& [name, x] : inputs)
    for (int variant = 0; variant < 4; ++variant) {
      const Tensor wv = variant & 1 ? w : Tensor(), bv = variant & 2 ? b : Tensor();
      COCA_CASE(name << (wv.defined() ? " weight" : "") << (bv.defined() ? " bias" : ""));
      EXPECT_TRUE(all_close(layer_norm(x, wv, bv, 1e-5), x.shape(), ref_layer_norm(x, wv, bv, 1e-5),
                            5 * fwd_tol<TypeParam>()));
    }
}

TYPED_TEST(NormForward, L2Normalize) {
  const DType dt = dtype_of<TypeParam>::value;
  Generator gen(2);
  Tensor x = uniform({4, 6, 5}, dt, gen);
  for (int64_t d : {-1, 0, 1}) {
    COCA_CASE("dim " << d);
    EXPECT_TRUE(all_close(l2_normalize(x, d), x.shape(), ref_l2_normalize(x, d, 1e-12), fwd_tol<TypeParam>()));
    Tensor xt = x.transpose(0, 2);
    EXPECT_TRUE(all_close(l2_normalize(xt, d), xt.shape(), ref_l2_normalize(xt, d, 1e-12), fwd_tol<TypeParam>()));
  }
  // Below eps the norm is clamped: y = x / eps.
  Tensor tiny = Tensor::from_vector<double>({1e-4, -2e-4, 1, 2}, {2, 2}).to(dt);
  EXPECT_TRUE(all_close(l2_normalize(tiny, -1, 1e-2), {2, 2}, ref_l2_normalize(tiny, -1, 1e-2), fwd_tol<TypeParam>()));
}

TYPED_TEST(NormForward, Embedding) {
  const DType dt = dtype_of<TypeParam>::value;
  Generator gen(3);
  Tensor w = uniform({7, 5}, dt, gen);
  const std::vector<int32_t> ids = {3, 0, 6, 3, 3, 1};
  Tensor out = embedding(w, i32(ids, {2, 3}));
  const auto vw = w.to_double_vector();
  std::vector<double> want;
  for (int32_t i : ids)
    for (int64_t d = 0; d < 5; ++d) want.push_back(vw[i * 5 + d]);
  EXPECT_TRUE(all_close(out, {2, 3, 5}, want, 0.0));
  // Non-contiguous weight and indices.
  Tensor wt = w.t().contiguous().t();
  Tensor idx_view = i32({3, 9, 0, 9, 6, 9}, {3, 2}).select(1, 0);  // {3, 0, 6}, strided
  auto got = embedding(wt, idx_view).to_double_vector();
  for (int64_t d = 0; d < 5; ++d) {
    EXPECT_EQ(got[d], vw[3 * 5 + d]);
    EXPECT_EQ(got[5 + d], vw[d]);
    EXPECT_EQ(got[10 + d], vw[6 * 5 + d]);
  }
}

TYPED_TEST(NormForward, CrossEntropyIgnoreIndexAndNormalizer) {
  const DType dt = dtype_of<TypeParam>::value;
  Generator gen(4);
  const int64_t N = 6, C = 5;
  Tensor logits = mul_scalar(uniform({N, C}, dt, gen), 3.0);
  const std::vector<int32_t> t = {1, -100, 4, 0, -100, 2};
  for (double normalizer : {-1.0, 10.0}) {
    COCA_CASE("normalizer " << normalizer);
    const double want = ref_cross_entropy(logits, t, -100, normalizer);
    Tensor loss = cross_entropy(logits, i32(t, {N}), -100, normalizer);
    EXPECT_EQ(loss.dim(), 0);
    EXPECT_TRUE(all_close(loss, {}, {want}, fwd_tol<TypeParam>()));
  }
  // A custom ignore index; a row-strided logits view; a transposed (class-strided) view.
  const std::vector<int32_t> t2 = {1, 3, 4, 0, 3, 2};
  EXPECT_TRUE(all_close(cross_entropy(logits, i32(t2, {N}), 3), {}, {ref_cross_entropy(logits, t2, 3, -1)},
                        fwd_tol<TypeParam>()));
  Tensor wide = uniform({N, C + 4}, dt, gen).slice(1, 2, C + 2);
  EXPECT_TRUE(all_close(cross_entropy(wide, i32(t2, {N})), {}, {ref_cross_entropy(wide, t2, -100, -1)},
                        fwd_tol<TypeParam>()));
  Tensor tr = uniform({C, N}, dt, gen).t();
  EXPECT_TRUE(all_close(cross_entropy(tr, i32(t2, {N})), {}, {ref_cross_entropy(tr, t2, -100, -1)},
                        fwd_tol<TypeParam>()));
  // Every row ignored: 0, not NaN.
  EXPECT_TRUE(all_close(cross_entropy(logits, i32(std::vector<int32_t>(N, -100), {N})), {}, {0.0}, 0.0));
  // Large logits do not overflow.
  Tensor big = Tensor::from_vector<double>({1000, 0, -1000, 500}, {2, 2}).to(dt);
  EXPECT_TRUE(all_close(cross_entropy(big, i32({1, 0}, {2})), {}, {ref_cross_entropy(big, {1, 0}, -100, -1)},
                        fwd_tol<TypeParam>()));
  // Many rows: the parallel path.
  Tensor many = uniform({4000, 7}, dt, gen);
  std::vector<int32_t> tm(4000);
  for (int i = 0; i < 4000; ++i) tm[i] = i % 9 == 0 ? -100 : i % 7;
  EXPECT_TRUE(all_close(cross_entropy(many, i32(tm, {4000})), {}, {ref_cross_entropy(many, tm, -100, -1)},
                        fwd_tol<TypeParam>()));
}

// ---- gradients ---------------------------------------------------------------------

TEST(NormGrad, LayerNorm) {
  Generator gen(5);
  const int64_t C = 6;
  Tensor x = uniform({2, 3, C}, DType::f64, gen).set_requires_grad(true);
  Tensor w = uniform({C}, DType::f64, gen, 0.5, 1.5).set_requires_grad(true);
  Tensor b = uniform({C}, DType::f64, gen).set_requires_grad(true);
  EXPECT_TRUE(gradcheck([](const In& in) { return layer_norm(in[0], in[1], in[2]); }, {x, w, b}));
  EXPECT_TRUE(gradcheck([](const In& in) { return layer_norm(in[0], Tensor(), Tensor()); }, {x}));
  EXPECT_TRUE(gradcheck([](const In& in) { return layer_norm(in[0], in[1], Tensor()); }, {x, w}));
  EXPECT_TRUE(gradcheck([](const In& in) { return layer_norm(in[0], in[1], in[2]); },
                        {transposed_leaf(uniform({4, C}, DType::f64, gen)), strided_leaf(w), strided_leaf(b)}));
  EXPECT_TRUE(gradcheck([](const In& in) { return layer_norm(in[0].t(), in[1], in[2]); },
                        {uniform({C, 4}, DType::f64, gen).set_requires_grad(true), w, b}));
  // Many rows: the threaded backward with per-thread partial sums for dweight and dbias.
  Tensor big = uniform({2000, 3}, DType::f64, gen).set_requires_grad(true);
  Tensor w3 = uniform({3}, DType::f64, gen).set_requires_grad(true), b3 = uniform({3}, DType::f64, gen).set_requires_grad(true);
  Tensor y = layer_norm(big, w3, b3);
  Tensor cot = uniform({2000, 3}, DType::f64, gen);
  y.backward(cot);
  // dbias = column sums of the cotangent; dweight = column sums of cot * normalised x.
  auto vc = cot.to_double_vector();
  auto xh = ref_layer_norm(big, Tensor(), Tensor(), 1e-5);
  std::vector<double> db(3, 0), dw(3, 0);
  for (int64_t i = 0; i < 6000; ++i) {
    db[i % 3] += vc[i];
    dw[i % 3] += vc[i] * xh[i];
  }
  EXPECT_TRUE(all_close(b3.grad(), {3}, db, 1e-12));
  EXPECT_TRUE(all_close(w3.grad(), {3}, dw, 1e-9));
}

TEST(NormGrad, L2Normalize) {
  Generator gen(6);
  Tensor x = uniform({3, 4}, DType::f64, gen).set_requires_grad(true);
  for (int64_t d : {-1, 0}) {
    COCA_CASE("dim " << d);
    EXPECT_TRUE(gradcheck([&](const In& in) { return l2_normalize(in[0], d); }, {x}));
    EXPECT_TRUE(gradcheck([&](const In& in) { return l2_normalize(in[0], d); }, {transposed_leaf(x)}));
  }
  // In the clamped regime the function is x / eps.
  Tensor tiny = mul_scalar(uniform({2, 3}, DType::f64, gen), 1e-3).detach().set_requires_grad(true);
  EXPECT_TRUE(gradcheck([](const In& in) { return l2_normalize(in[0], -1, 0.5); }, {tiny}, {1e-7, 1e-6, 1e-5, 1}));
}

TEST(NormGrad, EmbeddingScatterAddsRepeatedIndices) {
  Generator gen(7);
  Tensor w = uniform({5, 3}, DType::f64, gen).set_requires_grad(true);
  Tensor ids = i32({4, 1, 4, 4, 0, 1}, {3, 2});
  EXPECT_TRUE(gradcheck([&](const In& in) { return embedding(in[0], ids); }, {w}));
  EXPECT_TRUE(gradcheck([&](const In& in) { return embedding(in[0], ids); }, {transposed_leaf(w)}));
  // Row 2 and 3 are never used: their gradient is exactly zero.
  w.zero_grad();
  sum(embedding(w, ids)).backward();
  EXPECT_TRUE(all_close(w.grad(), {5, 3}, {1, 1, 1, 2, 2, 2, 0, 0, 0, 0, 0, 0, 3, 3, 3}, 0));
}

TEST(NormGrad, EmbeddingLargeScatterMatchesReference) {
  // Past the parallel threshold: column blocks split across threads.
  Generator gen(9);
  const int64_t V = 37, D = 200, n = 500;
  Tensor w = uniform({V, D}, DType::f64, gen).set_requires_grad(true);
  std::vector<int32_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<int32_t>(gen.below(V));
  Tensor g = uniform({n, D}, DType::f64, gen);
  embedding(w, i32(ids, {n})).backward(g);
  const auto vg = g.to_double_vector();
  std::vector<double> want(V * D, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t d = 0; d < D; ++d) want[ids[i] * D + d] += vg[i * D + d];
  EXPECT_TRUE(all_close(w.grad(), {V, D}, want, 1e-13));
}

TEST(NormGrad, CrossEntropy) {
  Generator gen(8);
  Tensor logits = mul_scalar(uniform({5, 4}, DType::f64, gen), 2.0).detach().set_requires_grad(true);
  Tensor t = i32({2, -100, 0, 3, 1}, {5});
  EXPECT_TRUE(gradcheck([&](const In& in) { return cross_entropy(in[0], t); }, {logits}));
  EXPECT_TRUE(gradcheck([&](const In& in) { return cross_entropy(in[0], t, -100, 7.0); }, {logits}));
  EXPECT_TRUE(gradcheck([&](const In& in) { return cross_entropy(in[0], i32({2, 3, 0, 3, 1}, {5}), 3); },
                        {transposed_leaf(logits)}));
  EXPECT_TRUE(gradcheck([&](const In& in) { return cross_entropy(in[0].slice(1, 1, 4), i32({2, -100, 0, 1, 1}, {5})); },
                        {logits}));
  // Ignored rows get exactly zero gradient; all ignored gives zero everywhere.
  logits.zero_grad();
  cross_entropy(logits, t).backward();
  auto g = logits.grad().to_double_vector();
  for (int c = 0; c < 4; ++c) EXPECT_EQ(g[4 + c], 0.0);
  logits.zero_grad();
  cross_entropy(logits, i32(std::vector<int32_t>(5, -100), {5})).backward();
  for (double v : logits.grad().to_double_vector()) EXPECT_EQ(v, 0.0);
}
