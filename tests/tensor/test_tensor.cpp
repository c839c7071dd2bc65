// Tensor basics: factories, dtype conversions (bf16 rounding included), views sharing storage,
// contiguous copies.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "coca/autograd/ops.h"
#include "common/test_util.h"

using namespace coca;
using coca::testing::all_close;

namespace {

uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Independent reference for float -> bf16: take the two bf16 values around f (truncation and
// the next one up in magnitude), pick the nearer by exact double arithmetic, ties to the even
// pattern. Past the largest bf16 the upper neighbour is 2^128, i.e. the value rounds to inf.
uint16_t ref_bf16(float f) {
  const uint32_t u = float_bits(f);
  const uint16_t lo = static_cast<uint16_t>(u >> 16);
  if ((u & 0xffffu) == 0) return lo;
  const uint16_t hi = static_cast<uint16_t>(lo + 1);
  const double x = std::fabs(static_cast<double>(f));
  const double vlo = std::fabs(static_cast<double>(bits_float(static_cast<uint32_t>(lo) << 16)));
  const double vhi = (hi & 0x7fff) == 0x7f80 ? std::ldexp(1.0, 128)
                                             : std::fabs(static_cast<double>(bits_float(static_cast<uint32_t>(hi) << 16)));
  const double dlo = x - vlo, dhi = vhi - x;
  if (dlo < dhi) return lo;
  if (dhi < dlo) return hi;
  return (lo & 1) ? hi : lo;
}

}  // namespace

TEST(Tensor, FactoriesAndMetadata) {
  Tensor z = Tensor::zeros({2, 3}, DType::f64);
  EXPECT_EQ(z.shape(), Shape({2, 3}));
  EXPECT_EQ(z.strides(), Shape({3, 1}));
  EXPECT_EQ(z.numel(), 6);
  EXPECT_EQ(z.describe(), "f64[2, 3]");
  for (double v : z.to_double_vector()) EXPECT_EQ(v, 0.0);
  for (double v : Tensor::ones({4}, DType::i32).to_double_vector()) EXPECT_EQ(v, 1.0);
  for (double v : Tensor::full({2, 2}, -2.5, DType::f32).to_double_vector()) EXPECT_EQ(v, -2.5);
  EXPECT_EQ(Tensor::arange(5).to_vector<int32_t>(), std::vector<int32_t>({0, 1, 2, 3, 4}));
  EXPECT_EQ(Tensor::scalar(3.25, DType::f64).item(), 3.25);
  EXPECT_EQ(Tensor::scalar(1.0).dim(), 0);
  Tensor fv = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {3, 2});
  EXPECT_EQ(fv.to_vector<float>(), std::vector<float>({1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(fv.size(-1), 2);
  EXPECT_EQ(fv.stride(0), 2);
  EXPECT_THROW(Tensor::from_vector<float>({1, 2, 3}, {2, 2}), Error);
  EXPECT_THROW(fv.item(), Error);
  EXPECT_EQ(dtype_size(DType::bf16), 2u);
  EXPECT_EQ(dtype_size(DType::f64), 8u);
}

TEST(Tensor, NumericConversions) {
  Tensor d = Tensor::from_vector<double>({0.1, -2.7, 2.7, 1e10, 255.0, 3.0}, {6});
  auto f = d.to(DType::f32).to_vector<float>();
  const double src[] = {0.1, -2.7, 2.7, 1e10, 255.0, 3.0};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(f[i], static_cast<float>(src[i]));
  // float -> double is exact.
  Tensor back = d.to(DType::f32).to(DType::f64);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(back.to_vector<double>()[i], static_cast<double>(static_cast<float>(src[i])));
  // floating -> integer truncates toward zero (C++ conversion), integer -> floating is exact.
  Tensor small = Tensor::from_vector<double>({-2.7, 2.7, 0.5, 7.0}, {4});
  EXPECT_EQ(small.to(DType::i32).to_vector<int32_t>(), std::vector<int32_t>({-2, 2, 0, 7}));
  Tensor u8 = Tensor::from_vector<double>({0.0, 1.9, 200.0, 255.0}, {4}).to(DType::u8);
  EXPECT_EQ(u8.to_vector<uint8_t>(), std::vector<uint8_t>({0, 1, 200, 255}));
  Tensor big = Tensor::from_vector<int32_t>({16777217, -5, 0}, {3});
  EXPECT_EQ(big.to(DType::f64).to_vector<double>(), std::vector<double>({16777217.0, -5.0, 0.0}));
  EXPECT_EQ(big.to(DType::f32).to_vector<float>()[0], 16777216.0f);  // nearest float
  // to() of the same dtype is the tensor itself.
  EXPECT_TRUE(d.to(DType::f64).same(d));
}

TEST(Tensor, Bf16RoundsToNearestEven) {
  struct Case {
    float in;
    uint16_t want;
  };
  const Case cases[] = {
      {1.0f, 0x3f80},
      {bits_float(0x3f808000), 0x3f80},  // 1 + 2^-8: tie between 0x3f80 (even) and 0x3f81
      {bits_float(0x3f818000), 0x3f82},  // 1 + 3*2^-8: tie between 0x3f81 and 0x3f82 (even)
      {bits_float(0x3f808001), 0x3f81},  // just above the tie
      {bits_float(0x3f807fff), 0x3f80},  // just below the tie
      {bits_float(0xbf818000), 0xbf82},  // negative tie, to even
      {bits_float(0x7f7fffff), 0x7f80},  // FLT_MAX rounds past the largest bf16: +inf
      {bits_float(0x7f7f7fff), 0x7f7f},  // below that midpoint: largest finite bf16
      {std::numeric_limits<float>::infinity(), 0x7f80},
      {-std::numeric_limits<float>::infinity(), 0xff80},
      {bits_float(0x00018000), 0x0002},  // subnormal tie, to even
      {0.0f, 0x0000},
      {-0.0f, 0x8000},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(bf16(c.in).bits, c.want) << std::hex << "input bits 0x" << float_bits(c.in);
    EXPECT_EQ(ref_bf16(c.in), c.want) << "the test's reference disagrees with the hand-derived value";
  }
  // NaN stays NaN (quiet), whatever its payload.
  for (uint32_t nan_bits : {0x7fc00000u, 0x7f800001u, 0xffff0000u, 0x7f80ffffu}) {
    const uint16_t b = bf16(bits_float(nan_bits)).bits;
    EXPECT_TRUE(std::isnan(bf16::to_float(b))) << std::hex << nan_bits;
  }
  // Random bit patterns (finite), against the reference, through a tensor conversion.
  Generator gen(17);
  std::vector<float> vals;
  for (int i = 0; i < 20000; ++i) {
    uint32_t u = static_cast<uint32_t>(gen.next_u64());
    if (i % 4 == 0) u = (u & 0xffff0000u) | 0x8000u;  // force exact ties often
    if (((u >> 23) & 0xff) == 0xff) u &= 0xbfffffffu;  // keep it finite
    vals.push_back(bits_float(u));
  }
  Tensor t = Tensor::from_vector<float>(vals, {static_cast<int64_t>(vals.size())});
  auto got = t.to(DType::bf16).to_vector<bf16>();
  for (size_t i = 0; i < vals.size(); ++i)
    ASSERT_EQ(got[i].bits, ref_bf16(vals[i])) << std::hex << "input bits 0x" << float_bits(vals[i]);
  // bf16 -> float is exact widening.
  auto widened = t.to(DType::bf16).to(DType::f32).to_vector<float>();
  for (size_t i = 0; i < vals.size(); ++i) ASSERT_EQ(float_bits(widened[i]), static_cast<uint32_t>(got[i].bits) << 16);
}

TEST(Tensor, Bf16FromDoubleRoundsOnce) {
  // 1 + 2^-8 + 2^-30 is above the tie; through float it would collapse to the tie and round
  // down to 1.0. Rounded once it is 1 + 2^-7.
  const double x = 1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -30);
  Tensor t = Tensor::from_vector<double>({x, -x, 1.0 + std::ldexp(1.0, -8)}, {3});
  auto b = t.to(DType::bf16).to_vector<bf16>();
  EXPECT_EQ(b[0].bits, 0x3f81);
  EXPECT_EQ(b[1].bits, 0xbf81);
  EXPECT_EQ(b[2].bits, 0x3f80);  // an exact tie still goes to even
  Tensor r = Tensor::full({1}, x, DType::bf16);
  EXPECT_EQ(r.to_vector<bf16>()[0].bits, 0x3f81);
}

TEST(Tensor, ViewsShareStorage) {
  Tensor base = Tensor::from_vector<float>({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, {3, 4});
  const void* storage = base.impl().storage.get();
  std::vector<Tensor> views = {base.t(),          base.slice(1, 1, 3), base.select(0, 2),   base.reshape({4, 3}),
                               base.unsqueeze(1), base.permute({1, 0}), base.detach(),      base.slice(0, 1, 2).squeeze(0),
                               base.select(1, 0).unsqueeze(1).expand({3, 5})};
  for (const Tensor& v : views) EXPECT_EQ(v.impl().storage.get(), storage) << v.describe();

  EXPECT_EQ(base.t().to_vector<float>(), std::vector<float>({0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}));
  EXPECT_EQ(base.slice(1, 1, 3).to_vector<float>(), std::vector<float>({1, 2, 5, 6, 9, 10}));
  EXPECT_EQ(base.select(0, 2).to_vector<float>(), std::vector<float>({8, 9, 10, 11}));
  EXPECT_EQ(base.select(1, 3).to_vector<float>(), std::vector<float>({3, 7, 11}));
  EXPECT_EQ(base.select(1, 0).unsqueeze(1).expand({3, 2}).to_vector<float>(), std::vector<float>({0, 0, 4, 4, 8, 8}));
  EXPECT_EQ(base.slice(1, 1, 3).stride(0), 4);
  EXPECT_FALSE(base.slice(1, 1, 3).is_contiguous());

  // Writes through a view land in the base.
  Tensor window = base.slice(1, 1, 3);
  window.fill_(-1);
  EXPECT_EQ(base.to_vector<float>(), std::vector<float>({0, -1, -1, 3, 4, -1, -1, 7, 8, -1, -1, 11}));
  Tensor col = base.t().select(0, 3);  // column 3
  col.copy_(Tensor::from_vector<float>({30, 70, 110}, {3}));
  EXPECT_EQ(base.select(1, 3).to_vector<float>(), std::vector<float>({30, 70, 110}));
}

TEST(Tensor, ContiguousCopiesOnlyWhenNeeded) {
  Generator gen(2);
  Tensor a = Tensor::randn({3, 4, 5}, gen);
  EXPECT_TRUE(a.contiguous().same(a));
  Tensor p = a.permute({2, 0, 1});
  EXPECT_FALSE(p.is_contiguous());
  Tensor c = p.contiguous();
  EXPECT_TRUE(c.is_contiguous());
  EXPECT_NE(c.impl().storage.get(), a.impl().storage.get());
  EXPECT_EQ(c.strides(), Shape({12, 4, 1}));
  auto va = a.to_vector<float>(), vc = c.to_vector<float>();
  for (int64_t i = 0; i < 5; ++i)
    for (int64_t j = 0; j < 3; ++j)
      for (int64_t k = 0; k < 4; ++k) ASSERT_EQ(vc[(i * 3 + j) * 4 + k], va[(j * 4 + k) * 5 + i]);
  // A copy is independent of its source.
  p.fill_(0);
  EXPECT_NE(c.to_vector<float>(), p.contiguous().to_vector<float>());
  // clone always copies.
  Tensor cl = a.clone();
  EXPECT_NE(cl.impl().storage.get(), a.impl().storage.get());
  // A reshape that cannot be a view copies, with the values in logical order.
  Tensor r = a.transpose(0, 2).reshape({-1});
  EXPECT_EQ(r.shape(), Shape({60}));
  EXPECT_EQ(r.to_vector<float>(), a.transpose(0, 2).contiguous().to_vector<float>());
  // Size-1 dims do not break contiguity; slices along dim 0 stay contiguous.
  EXPECT_TRUE(a.slice(0, 1, 2).is_contiguous());
  EXPECT_TRUE(a.unsqueeze(0).is_contiguous());
}

TEST(Tensor, ReshapeInfersOneDim) {
  Tensor a = Tensor::zeros({2, 3, 4});
  EXPECT_EQ(a.reshape({-1, 4}).shape(), Shape({6, 4}));
  EXPECT_EQ(a.reshape({2, -1}).shape(), Shape({2, 12}));
  EXPECT_THROW(a.reshape({-1, -1}), Error);
  EXPECT_THROW(a.reshape({5, -1}), Error);
  EXPECT_THROW(a.reshape({7, 3}), Error);
}

TEST(Tensor, CopyAcrossDtypesAndStrides) {
  Generator gen(4);
  Tensor src = Tensor::randn({4, 6}, gen, DType::f64);
  Tensor dst = Tensor::zeros({6, 4}, DType::f32).t();  // strided destination
  dst.copy_(src);
  auto s = src.to_vector<double>();
  auto d = dst.to_vector<float>();
  for (size_t i = 0; i < s.size(); ++i) EXPECT_EQ(d[i], static_cast<float>(s[i]));
  EXPECT_THROW(dst.copy_(Tensor::zeros({4, 5})), Error);
}

TEST(Tensor, BroadcastExpandHasZeroStride) {
  Tensor a = Tensor::from_vector<float>({1, 2, 3}, {3, 1});
  Tensor e = a.expand({2, 3, 4});
  EXPECT_EQ(e.strides(), Shape({0, 1, 0}));
  EXPECT_EQ(e.to_vector<float>(),
            std::vector<float>({1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3}));
  EXPECT_THROW(a.expand({2, 4}), Error);
}
