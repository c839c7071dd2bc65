// Every op forward and backward on the GPU against the CPU on random inputs (float32 NMSE
// <= 1e-7; bf16 matmuls <= 1e-3), plus the tensor layer's device plumbing, the caching
// allocator, AdamW and the gradient norm. Skips with a message where no GPU is present.
#include <cmath>
#include <cstdlib>
#include <limits>

#include "coca/kernels/cuda/adamw.h"
#include "coca/kernels/cuda/attention.h"
#include "coca/dist/mpi.h"
#include "coca/dist/nccl.h"
#include "coca/kernels/cuda/runtime.h"
#include "coca/optim/adamw.h"
#include "parity.h"

using namespace coca;
using namespace coca::test;

namespace {

constexpr double kF32 = 1e-7;
constexpr double kBf16 = 1e-3;

Tensor rn(const Shape& s, uint64_t seed, double stdv = 1.0) {
  Generator g(seed);
  return Tensor::randn(s, g, DType::f32, 0.0, stdv);
}
Tensor ru(const Shape& s, uint64_t seed, double lo, double hi) {
  Generator g(seed);
  return Tensor::rand(s, g, DType::f32, lo, hi);
}
Tensor ints(const Shape& s, uint64_t seed, int64_t n) {
  Generator g(seed);
  std::vector<int32_t> v(shape_numel(s));
  for (auto& x : v) x = static_cast<int32_t>(g.below(n));
  return Tensor::from_vector(v, s);
}

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;
void check(const std::string& name, std::vector<Tensor> in, std::vector<bool> grad, Fn f, double tol = kF32) {
  expect_parity(name, run_parity(in, grad, f), tol);
}

class CudaOps : public ::testing::Test {
 protected:
  void SetUp() override {
    COCA_SKIP_WITHOUT_GPU();
    cuda::set_matmul_precision(cuda::MatmulPrecision::Float32);
    cuda::set_attention_impl(cuda::AttentionImpl::Auto);
  }
};

}  // namespace

TEST(CudaRuntime, ReportsDeviceOrSkips) {
  COCA_SKIP_WITHOUT_GPU();
  std::printf("[device] %s (count %d)\n", cuda::device_name(), cuda::device_count());
  SUCCEED();
}

TEST_F(CudaOps, RoundTripAndFactories) {
  Tensor a = rn({3, 5, 7}, 1);
  Tensor g = a.cuda();
  EXPECT_EQ(g.device(), Device::CUDA);
  EXPECT_EQ(nmse(g.cpu(), a), 0.0);
  // Strided both ways: a transposed view up, a transposed view down.
  EXPECT_EQ(nmse(a.transpose(0, 2).cuda(), a.transpose(0, 2)), 0.0);
  EXPECT_EQ(nmse(g.transpose(0, 2).cpu(), a.transpose(0, 2)), 0.0);
  Tensor dst = Tensor::zeros({7, 5, 3}, DType::f32, Device::CUDA);
  dst.copy_(a.transpose(0, 2));
  EXPECT_EQ(nmse(dst, a.transpose(0, 2)), 0.0);
  EXPECT_EQ(Tensor::zeros({4, 4}, DType::f32, Device::CUDA).cpu().to_double_vector(), std::vector<double>(16, 0.0));
  EXPECT_EQ(Tensor::ones({3}, DType::f64, Device::CUDA).to_double_vector(), std::vector<double>(3, 1.0));
  EXPECT_DOUBLE_EQ(Tensor::scalar(2.5, DType::f32, Device::CUDA).item(), 2.5);
  // dtype conversion on the device matches the CPU's rounding.
  EXPECT_EQ(nmse(g.to(DType::bf16).to(DType::f32), a.to(DType::bf16).to(DType::f32)), 0.0);
  EXPECT_EQ(nmse(g.to(DType::f64), a.to(DType::f64)), 0.0);
  Tensor idx = ints({10}, 3, 100);
  EXPECT_EQ(idx.cuda().to_vector<int32_t>(), idx.to_vector<int32_t>());
}

TEST_F(CudaOps, CachingAllocatorReusesBlocks) {
  if (std::getenv("COCA_CUDA_NO_CACHE")) GTEST_SKIP() << "COCA_CUDA_NO_CACHE is set: the cache is off";
  { Tensor warm = Tensor::empty({1 << 20}, DType::f32, Device::CUDA); }
  const auto before = cuda::allocator_stats();
  for (int i = 0; i < 50; ++i) Tensor t = Tensor::empty({1 << 20}, DType::f32, Device::CUDA);
  const auto after = cuda::allocator_stats();
  EXPECT_EQ(after.driver_allocs, before.driver_allocs) << "steady-state allocations reached cudaMalloc";
  EXPECT_GE(after.cache_hits - before.cache_hits, 50);
}

TEST_F(CudaOps, ToDeviceIsDifferentiable) {
  check("to_device", {rn({4, 6}, 2)}, {true}, [](const std::vector<Tensor>& x) {
    return mul_scalar(x[0].to(Device::CPU).to(x[0].device()), 3.0);
  });
}

TEST_F(CudaOps, Elementwise) {
  auto bin = [](Tensor (*f)(const Tensor&, const Tensor&)) {
    return [f](const std::vector<Tensor>& x) { return f(x[0], x[1]); };
  };
  check("add_broadcast", {rn({4, 5, 6}, 1), rn({5, 1}, 2)}, {true, true}, bin(add));
  check("sub_broadcast", {rn({4, 5, 6}, 3), rn({6}, 4)}, {true, true}, bin(sub));
  check("mul_broadcast", {rn({2, 1, 6}, 5), rn({3, 6}, 6)}, {true, true}, bin(mul));
  check("div_broadcast", {rn({4, 5, 6}, 7), ru({4, 1, 6}, 8, 0.5, 2.0)}, {true, true}, bin(div));
  check("add_strided", {rn({6, 5}, 9), rn({5, 6}, 10)}, {true, true},
        [](const std::vector<Tensor>& x) { return add(x[0].t(), x[1]); });
  using U = Tensor (*)(const Tensor&);
  const std::vector<std::pair<std::string, U>> unary = {{"neg", neg}, {"exp", exp}, {"tanh", tanh}, {"gelu", gelu}};
  for (auto& [name, f] : unary)
    check(name, {rn({7, 33}, 11)}, {true}, [f = f](const std::vector<Tensor>& x) { return f(x[0]); });
  const std::vector<std::pair<std::string, U>> positive = {{"log", log}, {"sqrt", sqrt}, {"rsqrt", rsqrt}};
  for (auto& [name, f] : positive)
    check(name, {ru({7, 33}, 12, 0.5, 3.0)}, {true}, [f = f](const std::vector<Tensor>& x) { return f(x[0]); });
  check("add_scalar", {rn({100}, 13)}, {true}, [](const std::vector<Tensor>& x) { return add_scalar(x[0], 1.5); });
  check("mul_scalar", {rn({100}, 14)}, {true}, [](const std::vector<Tensor>& x) { return mul_scalar(x[0], -0.7); });
  check("pow_scalar", {ru({100}, 15, 0.5, 2.0)}, {true},
        [](const std::vector<Tensor>& x) { return pow_scalar(x[0], 2.5); });
  check("clamp", {rn({1000}, 16)}, {true}, [](const std::vector<Tensor>& x) { return clamp(x[0], -0.5, 0.7); });
  check("large_gelu", {rn({1 << 20}, 17)}, {true}, [](const std::vector<Tensor>& x) { return gelu(x[0]); });
}

TEST_F(CudaOps, Reductions) {
  check("sum_all", {rn({17, 33}, 1)}, {true}, [](const std::vector<Tensor>& x) { return sum(x[0]); });
  check("sum_last", {rn({5, 7, 300}, 2)}, {true}, [](const std::vector<Tensor>& x) { return sum(x[0], {2}); });
  check("sum_middle", {rn({5, 700, 9}, 3)}, {true}, [](const std::vector<Tensor>& x) { return sum(x[0], {1}); });
  check("sum_rows_long", {rn({20000, 40}, 4)}, {true}, [](const std::vector<Tensor>& x) { return sum(x[0], {0}); });
  check("sum_two_dims", {rn({4, 5, 6}, 5)}, {true}, [](const std::vector<Tensor>& x) { return sum(x[0], {0, 2}, true); });
  check("mean", {rn({8, 9}, 6)}, {true}, [](const std::vector<Tensor>& x) { return mean(x[0], {1}); });
  check("max_last", {rn({9, 77}, 7)}, {true}, [](const std::vector<Tensor>& x) { return max(x[0], -1); });
  check("max_dim0", {rn({50, 6}, 8)}, {true}, [](const std::vector<Tensor>& x) { return max(x[0], 0, true); });
  check("sum_to_shape", {rn({4, 5, 6}, 9)}, {true},
        [](const std::vector<Tensor>& x) { return sum_to_shape(x[0], {5, 1}); });
}

TEST_F(CudaOps, Softmax) {
  check("softmax_last", {rn({6, 50}, 1, 3.0)}, {true}, [](const std::vector<Tensor>& x) { return softmax(x[0]); });
  check("softmax_dim1", {rn({3, 40, 5}, 2)}, {true}, [](const std::vector<Tensor>& x) { return softmax(x[0], 1); });
  check("log_softmax", {rn({6, 1000}, 3, 3.0)}, {true},
        [](const std::vector<Tensor>& x) { return log_softmax(x[0]); });
}

TEST_F(CudaOps, Norms) {
  check("layer_norm", {rn({4, 9, 768}, 1, 2.0), rn({768}, 2), rn({768}, 3)}, {true, true, true},
        [](const std::vector<Tensor>& x) { return layer_norm(x[0], x[1], x[2]); });
  check("layer_norm_many_rows", {rn({3000, 64}, 4), rn({64}, 5), rn({64}, 6)}, {true, true, true},
        [](const std::vector<Tensor>& x) { return layer_norm(x[0], x[1], x[2]); });
  check("layer_norm_no_affine", {rn({7, 33}, 7)}, {true},
        [](const std::vector<Tensor>& x) { return layer_norm(x[0], Tensor(), Tensor()); });
  check("l2_normalize", {rn({9, 512}, 8)}, {true}, [](const std::vector<Tensor>& x) { return l2_normalize(x[0]); });
  check("l2_normalize_dim0", {rn({16, 5}, 9)}, {true},
        [](const std::vector<Tensor>& x) { return l2_normalize(x[0], 0); });
}

TEST_F(CudaOps, Embedding) {
  check("embedding", {rn({50, 24}, 1), ints({4, 7}, 2, 50)}, {true, false},
        [](const std::vector<Tensor>& x) { return embedding(x[0], x[1]); });
  // A bad index does not stop the device: its row is zeros, backward adds nothing for it, and
  // check_deferred_errors() raises it once, naming the position.
  Tensor w = rn({10, 4}, 3).cuda();
  w.set_requires_grad(true);
  Tensor bad = Tensor::from_vector(std::vector<int32_t>{1, 2, 10}, {3}).cuda();
  const int64_t copies = device_to_host_copies();
  Tensor out = embedding(w, bad);
  sum(out).backward();
  EXPECT_EQ(device_to_host_copies(), copies) << "the gather waited for the device";
  const std::vector<float> rows = out.to_vector<float>(), grad = w.grad().to_vector<float>();
  for (int d = 0; d < 4; ++d) EXPECT_EQ(rows[8 + d], 0.f);
  float grad_sum = 0;
  for (float g : grad) grad_sum += g;
  EXPECT_EQ(grad_sum, 8.f);  // the two good rows, 4 columns each
  try {
    check_deferred_errors();
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("index 10 at position 2 is outside [0, 10)"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(check_deferred_errors());  // raised once
}

TEST_F(CudaOps, CrossEntropy) {
  Tensor t = ints({64}, 2, 1000);
  {
    auto v = t.to_vector<int32_t>();
    v[3] = v[10] = -100;
    t = Tensor::from_vector(v, {64});
  }
  check("cross_entropy", {rn({64, 1000}, 1, 3.0), t}, {true, false},
        [](const std::vector<Tensor>& x) { return cross_entropy(x[0], x[1]); });
  check("cross_entropy_normalizer", {rn({64, 1000}, 3), t}, {true, false},
        [](const std::vector<Tensor>& x) { return cross_entropy(x[0], x[1], -100, 17.0); });
  check("cross_entropy_strided_rows", {rn({64, 2000}, 4), t}, {true, false},
        [](const std::vector<Tensor>& x) { return cross_entropy(x[0].slice(1, 500, 1500), x[1]); });
  // The loss stays on the device (no wait); a bad target is raised by check_deferred_errors().
  Tensor bad = Tensor::from_vector(std::vector<int32_t>{0, 7}, {2}).cuda();
  const int64_t copies = device_to_host_copies();
  Tensor loss = cross_entropy(rn({2, 5}, 5).cuda(), bad);
  EXPECT_EQ(device_to_host_copies(), copies) << "cross_entropy waited for the device";
  try {
    check_deferred_errors();
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("target 7 at row 1 is outside [0, 5)"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(check_deferred_errors());
}

TEST_F(CudaOps, Matmul) {
  auto mm = [](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); };
  check("matmul_2d", {rn({33, 65}, 1), rn({65, 17}, 2)}, {true, true}, mm);
  check("matmul_batched", {rn({3, 4, 20, 30}, 3), rn({3, 4, 30, 10}, 4)}, {true, true}, mm);
  check("matmul_broadcast", {rn({2, 3, 20, 30}, 5), rn({30, 10}, 6)}, {true, true}, mm);
  check("matmul_broadcast_batch", {rn({2, 1, 20, 30}, 7), rn({1, 3, 30, 10}, 8)}, {true, true}, mm);
  check("matmul_transposed", {rn({30, 20}, 9), rn({10, 30}, 10)}, {true, true},
        [](const std::vector<Tensor>& x) { return matmul(x[0].t(), x[1].t()); });
  check("linear_bias", {rn({4, 9, 64}, 11), rn({96, 64}, 12), rn({96}, 13)}, {true, true, true},
        [](const std::vector<Tensor>& x) { return linear(x[0], x[1], x[2]); });
  check("linear_nobias", {rn({50, 64}, 14), rn({32, 64}, 15)}, {true, true},
        [](const std::vector<Tensor>& x) { return linear(x[0], x[1]); });
  check("linear_large", {rn({512, 768}, 16), rn({3072, 768}, 17), rn({3072}, 18)}, {true, true, true},
        [](const std::vector<Tensor>& x) { return linear(x[0], x[1], x[2]); });
}

TEST_F(CudaOps, MatmulBf16) {
  cuda::set_matmul_precision(cuda::MatmulPrecision::Bf16);
  check("bf16_matmul", {rn({64, 256}, 1), rn({256, 128}, 2)}, {true, true},
        [](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); }, kBf16);
  check("bf16_linear", {rn({4, 50, 768}, 3), rn({768, 768}, 4, 0.03), rn({768}, 5)}, {true, true, true},
        [](const std::vector<Tensor>& x) { return linear(x[0], x[1], x[2]); }, kBf16);
  check("bf16_matmul_batched", {rn({8, 50, 64}, 6), rn({8, 64, 50}, 7)}, {true, true},
        [](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); }, kBf16);
  // Odd sizes: the operand casts end with a scalar tail after the 4-wide vector part.
  check("bf16_matmul_odd", {rn({5, 7}, 8), rn({7, 3}, 9)}, {true, true},
        [](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); }, kBf16);
  cuda::set_matmul_precision(cuda::MatmulPrecision::Float32);
}

namespace {

// Puts back the default attention implementation and float32 matmuls, also when a check throws.
struct AttentionImplGuard {
  ~AttentionImplGuard() {
    try {
      cuda::set_attention_impl(cuda::AttentionImpl::Auto);
      cuda::set_matmul_precision(cuda::MatmulPrecision::Float32);
    } catch (...) {
    }
  }
};

// body(suffix, tolerance) under each CUDA attention implementation: the tiled kernels, the
// cuBLAS GEMM path (which falls back to tiled for S > 512), the GEMM path with bf16 matmuls,
// and the fused kernels (which fall back to the Auto rule for what they cannot run: D > 64,
// long key lengths).
void for_each_attention_impl(const std::function<void(const std::string&, double)>& body) {
  AttentionImplGuard guard;
  cuda::set_attention_impl(cuda::AttentionImpl::Tiled);
  body("/tiled", kF32);
  cuda::set_attention_impl(cuda::AttentionImpl::Gemm);
  body("/gemm", kF32);
  cuda::set_matmul_precision(cuda::MatmulPrecision::Bf16);
  body("/gemm_bf16", kBf16);
  cuda::set_matmul_precision(cuda::MatmulPrecision::Float32);
  cuda::set_attention_impl(cuda::AttentionImpl::Fused);
  body("/fused", kF32);
}

// qkv_grad: which of q, k, v get (and have compared) gradients.
void check_attention(const std::string& name, int64_t B, int64_t H, int64_t T, int64_t S, int64_t D, bool causal,
                     bool additive, bool padding, uint64_t seed, std::vector<bool> qkv_grad = {true, true, true}) {
  std::vector<Tensor> in = {rn({B, H, T, D}, seed), rn({B, H, S, D}, seed + 1), rn({B, H, S, D}, seed + 2)};
  std::vector<bool> grad = qkv_grad;
  in.push_back(additive ? rn({B, 1, T, S}, seed + 3) : Tensor());
  grad.push_back(false);
  if (padding) {
    std::vector<uint8_t> kp(B * S, 0);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t s = 0; s < S; ++s) kp[b * S + s] = (s * 7 + b) % 5 == 0;
    for (int64_t s = 0; s < S; ++s) kp[s] = 1;  // batch 0: every key masked, output zeros
    in.push_back(Tensor::from_vector(kp, {B, S}));
  } else {
    in.push_back(Tensor());
  }
  grad.push_back(false);
  for_each_attention_impl([&](const std::string& impl, double tol) {
    check(name + impl, in, grad, [causal](const std::vector<Tensor>& x) {
      AttentionMask m;
      m.causal = causal;
      m.additive = x[3];
      m.key_padding = x[4];
      return scaled_dot_product_attention(x[0], x[1], x[2], m);
    }, tol);
  });
}

// Key padding u8 [B, S] with a few keys masked per batch (none fully).
Tensor some_padding(int64_t B, int64_t S) {
  std::vector<uint8_t> kp(B * S, 0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t s = 0; s < S; ++s) kp[b * S + s] = (s * 3 + b) % 7 == 0;
  return Tensor::from_vector(kp, {B, S});
}

}  // namespace

TEST_F(CudaOps, Attention) {
  check_attention("attention_self", 2, 3, 50, 50, 64, false, false, false, 1);
  check_attention("attention_causal", 2, 2, 77, 77, 64, true, false, false, 2);
  check_attention("attention_cross", 2, 2, 75, 255, 64, false, false, false, 3);
  check_attention("attention_causal_offset", 1, 2, 20, 45, 32, true, false, false, 4);
  check_attention("attention_additive", 2, 2, 40, 40, 16, false, true, false, 5);
  check_attention("attention_padding", 3, 2, 17, 33, 24, false, false, true, 6);
  check_attention("attention_d128", 1, 2, 70, 70, 128, false, false, false, 8);
  {
    // Keys past the GEMM path's 512 (it hands S > 512 to the tiled kernels, so one
    // implementation is checked): 600 keys, causal, the 70 queries aligned to the last keys.
    std::vector<Tensor> in = {rn({1, 2, 70, 64}, 7), rn({1, 2, 600, 64}, 17), rn({1, 2, 600, 64}, 27)};
    AttentionImplGuard guard;
    cuda::set_attention_impl(cuda::AttentionImpl::Tiled);
    check("attention_long/tiled", in, {true, true, true}, [](const std::vector<Tensor>& x) {
      AttentionMask m;
      m.causal = true;
      return scaled_dot_product_attention(x[0], x[1], x[2], m);
    }, kF32);
  }
  // Key padding and causal together (batch 0 fully masked as well).
  check_attention("attention_padding_causal", 3, 2, 33, 33, 32, true, false, true, 10);
  // CoCa's cross-attention shape: 76 text queries over 50 image tokens, T != S.
  check_attention("attention_cross_76x50", 2, 3, 76, 50, 64, false, false, true, 11);
  // Causal with T > S: the first T - S queries precede every key, so their rows are fully
  // masked (zeros, lse -inf, zero gradients), as the CPU kernel defines.
  check_attention("attention_fully_masked_rows", 2, 2, 40, 25, 16, true, true, false, 12);
  // Edge sizes of the GEMM path: the longest key length it takes, one key, one query.
  check_attention("attention_s512", 1, 2, 64, 512, 64, false, false, true, 13);
  // With one key P = 1, so dq and dk are 0 up to rounding noise (no meaningful NMSE): only dv is compared.
  check_attention("attention_one_key", 2, 2, 5, 1, 8, false, false, true, 14, {false, false, true});
  check_attention("attention_one_query", 2, 2, 1, 50, 64, true, false, false, 15);
  // A head view straight out of a packed projection (strided q/k/v, no copy).
  for_each_attention_impl([](const std::string& impl, double tol) {
    check("attention_packed_views" + impl, {rn({2, 30, 3, 4, 32}, 9)}, {true}, [](const std::vector<Tensor>& x) {
      Tensor q = x[0].select(2, 0).permute({0, 2, 1, 3});
      Tensor k = x[0].select(2, 1).permute({0, 2, 1, 3});
      Tensor v = x[0].select(2, 2).permute({0, 2, 1, 3});
      return scaled_dot_product_attention(q, k, v, {});
    }, tol);
  });
}

namespace {

// Mask kinds of the fused-attention checks.
enum class AttnMask { None, Causal, Padding, PaddingCausal, AdditiveTS, AdditiveBHTS, ClsPattern, CausalAdditive };

struct AttnRun {
  std::vector<Tensor> out;  // output, dq, dk, dv (on the CPU)
  int64_t fused_calls = 0;  // attention_fused_calls() during the run
};

// Forward and backward of scaled_dot_product_attention on `dev` under `impl` (GPU only):
// inputs q, k, v, additive, key_padding (CPU tensors, masks undefined when absent), upstream g.
AttnRun run_attention(const std::vector<Tensor>& in, const Tensor& g, bool causal, Device dev,
                      cuda::AttentionImpl impl = cuda::AttentionImpl::Auto) {
  std::vector<Tensor> x;
  for (const Tensor& t : in) x.push_back(t.defined() ? t.detach().to(dev) : Tensor());
  for (int i = 0; i < 3; ++i) x[i].set_requires_grad(true);
  if (dev == Device::CUDA) cuda::set_attention_impl(impl);
  const int64_t before = cuda::attention_fused_calls();
  AttentionMask m;
  m.causal = causal;
  m.additive = x[3];
  m.key_padding = x[4];
  Tensor out = scaled_dot_product_attention(x[0], x[1], x[2], m);
  out.backward(g.to(dev));
  AttnRun r;
  r.out = {out.detach().to(Device::CPU), x[0].grad().to(Device::CPU), x[1].grad().to(Device::CPU),
           x[2].grad().to(Device::CPU)};
  r.fused_calls = cuda::attention_fused_calls() - before;
  return r;
}

// The fused kernels against the CPU backend and against the GEMM path (same matmul precision):
// the output and dq, dk, dv by NMSE <= tol. With one key P = 1, so dq and dk are rounding
// noise: only the output and dv are compared then.
void check_fused_attention(const std::string& name, int64_t B, int64_t H, int64_t T, int64_t S, int64_t D, AttnMask mk,
                           uint64_t seed, double tol = kF32, bool check_deterministic = false) {
  std::vector<Tensor> in = {rn({B, H, T, D}, seed), rn({B, H, S, D}, seed + 1), rn({B, H, S, D}, seed + 2), Tensor(),
                            Tensor()};
  const bool causal = mk == AttnMask::Causal || mk == AttnMask::PaddingCausal || mk == AttnMask::CausalAdditive;
  if (mk == AttnMask::AdditiveTS) in[3] = rn({T, S}, seed + 3);
  if (mk == AttnMask::AdditiveBHTS || mk == AttnMask::CausalAdditive) in[3] = rn({B, H, T, S}, seed + 3);
  if (mk == AttnMask::ClsPattern) {
    // The text tower's mask (TextTransformer::attention_mask): causal over the tokens, and the
    // last (CLS) row sees the tokens that follow a non-pad token (OpenCLIP's shifted rule):
    // here batch b has 2 + 5b tokens, the rest padding, and CLS sees itself only in a full row.
    const double ninf = -std::numeric_limits<double>::infinity();
    std::vector<float> m(B * T * S, 0.f);
    for (int64_t b = 0; b < B; ++b) {
      float* mb = m.data() + b * T * S;
      for (int64_t i = 0; i < T; ++i)
        for (int64_t j = i + 1 + (S - T); j < S; ++j) mb[i * S + j] = static_cast<float>(ninf);
      const int64_t used = std::min<int64_t>(2 + 5 * b, S - 1);
      float* cls = mb + (T - 1) * S;
      for (int64_t j = 0; j < S - 1; ++j) cls[j] = (j == 0 || j - 1 < used) ? 0.f : static_cast<float>(ninf);
      cls[S - 1] = used == S - 1 ? 0.f : static_cast<float>(ninf);
    }
    in[3] = Tensor::from_vector(m, {B, 1, T, S});
  }
  if (mk == AttnMask::Padding || mk == AttnMask::PaddingCausal) {
    std::vector<uint8_t> kp(B * S, 0);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t s = 0; s < S; ++s) kp[b * S + s] = (s * 7 + b) % 5 == 0;
    if (B > 1)
      for (int64_t s = 0; s < S; ++s) kp[s] = 1;  // batch 0: every key masked, output zeros
    in[4] = Tensor::from_vector(kp, {B, S});
  }
  Generator gen(seed + 99);
  const Tensor g = Tensor::randn({B, H, T, D}, gen, DType::f32);
  AttentionImplGuard guard;
  if (tol > kF32) cuda::set_matmul_precision(cuda::MatmulPrecision::Bf16);
  const AttnRun cpu = run_attention(in, g, causal, Device::CPU);
  const AttnRun gemm = run_attention(in, g, causal, Device::CUDA, cuda::AttentionImpl::Gemm);
  const AttnRun fused = run_attention(in, g, causal, Device::CUDA, cuda::AttentionImpl::Fused);
  EXPECT_EQ(gemm.fused_calls, 0) << name;
  EXPECT_EQ(fused.fused_calls, 2) << name << ": the fused kernels did not run forward and backward";
  const char* what[4] = {"out", "dq", "dk", "dv"};
  std::string line = "[fused-attention] " + name;
  bool ok = true;
  for (int t = 0; t < 4; ++t) {
    if (S == 1 && (t == 1 || t == 2)) continue;
    const double vs_cpu = nmse(fused.out[t], cpu.out[t]), vs_gemm = nmse(fused.out[t], gemm.out[t]);
    EXPECT_LE(vs_cpu, tol) << name << " " << what[t] << " fused vs CPU";
    EXPECT_LE(vs_gemm, tol) << name << " " << what[t] << " fused vs GEMM path";
    ok = ok && vs_cpu <= tol && vs_gemm <= tol;
    char buf[96];
    std::snprintf(buf, sizeof buf, " %s cpu=%.1e gemm=%.1e", what[t], vs_cpu, vs_gemm);
    line += buf;
  }
  if (check_deterministic) {
    const AttnRun again = run_attention(in, g, causal, Device::CUDA, cuda::AttentionImpl::Fused);
    for (int t = 0; t < 4; ++t)
      EXPECT_EQ(again.out[t].to_double_vector(), fused.out[t].to_double_vector())
          << name << " " << what[t] << ": a second run differs";
    line += " deterministic";
  }
  std::printf("%s tol=%.0e %s\n", line.c_str(), tol, ok ? "ok" : "FAIL");
  std::fflush(stdout);
}

}  // namespace

// The fused kernels (attention_fused.cu) at CoCa's shapes: lengths 1, 7, 49, 50, 76, 77 and the
// attentional pooler's 256 queries over 50 keys; one and several heads; head dims 64, 32, 16, 8
// and an odd 24 (run-time D); every mask kind (causal, key padding with a fully masked batch,
// additive [T, S], [B, H, T, S], the text tower's CLS pattern, and combinations).
TEST_F(CudaOps, AttentionFused) {
  check_fused_attention("self_50x50_h3_d64", 2, 3, 50, 50, 64, AttnMask::None, 101);
  check_fused_attention("causal_77x77_h2_d64", 2, 2, 77, 77, 64, AttnMask::Causal, 102);
  check_fused_attention("cls_77x77_h2_d64", 3, 2, 77, 77, 64, AttnMask::ClsPattern, 103);
  check_fused_attention("cross_76x50_pad_h2_d64", 2, 2, 76, 50, 64, AttnMask::Padding, 104);
  check_fused_attention("pooler_256x50_h1_d64", 2, 1, 256, 50, 64, AttnMask::None, 105, kF32, true);
  check_fused_attention("pad_causal_49x49_h2_d32", 3, 2, 49, 49, 32, AttnMask::PaddingCausal, 106);
  check_fused_attention("additive_ts_7x7_h4_d16", 2, 4, 7, 7, 16, AttnMask::AdditiveTS, 107);
  check_fused_attention("additive_bhts_7x49_h2_d8", 2, 2, 7, 49, 8, AttnMask::AdditiveBHTS, 108);
  check_fused_attention("causal_offset_49x76_h1_d32", 1, 1, 49, 76, 32, AttnMask::Causal, 109);
  check_fused_attention("one_query_1x50_causal_h2_d64", 2, 2, 1, 50, 64, AttnMask::Causal, 110);
  check_fused_attention("one_key_7x1_pad_h2_d8", 3, 2, 7, 1, 8, AttnMask::Padding, 111);
  // Causal with T > S: the first T - S rows are fully masked (zeros, lse -inf, no gradient).
  check_fused_attention("masked_rows_50x7_h2_d16", 2, 2, 50, 7, 16, AttnMask::CausalAdditive, 112);
  check_fused_attention("odd_d24_17x33_pad_h2", 2, 2, 17, 33, 24, AttnMask::Padding, 113);
  // bf16 operands (MatmulPrecision::Bf16): against the CPU (float32) and the GEMM path's bf16, NMSE <= 1e-3.
  check_fused_attention("bf16_cls_77x77_h2_d64", 2, 2, 77, 77, 64, AttnMask::ClsPattern, 114, kBf16);
  check_fused_attention("bf16_pooler_256x50_h2_d64", 1, 2, 256, 50, 64, AttnMask::Padding, 115, kBf16);
  check_fused_attention("bf16_cross_76x50_h2_d32", 2, 2, 76, 50, 32, AttnMask::None, 116, kBf16);
}

// attention_from_projections: q/k/v are column windows of the projection outputs and dq/dk/dv
// are written into windows of one gradient buffer (row stride 3*H*D for a packed qkv source).
TEST_F(CudaOps, AttentionFromProjections) {
  const Tensor pad77 = some_padding(2, 77), pad50 = some_padding(2, 50);
  for_each_attention_impl([&](const std::string& impl, double tol) {
    // Packed causal self-attention, text-like: [B, T, 3W], W = 4 heads x 16.
    check("attention_proj_packed_self" + impl, {rn({2, 77, 3 * 64}, 20), pad77}, {true, false},
          [](const std::vector<Tensor>& x) {
            AttentionMask m;
            m.causal = true;
            m.key_padding = x[1];
            return attention_from_projections(x[0], 0, x[0], 64, 128, 64, 4, m);
          }, tol);
    // Cross-attention: q from [B, T, W], k and v from a packed [B, S, 2W] source.
    check("attention_proj_cross" + impl, {rn({2, 76, 64}, 21), rn({2, 50, 128}, 22), pad50}, {true, true, false},
          [](const std::vector<Tensor>& x) {
            AttentionMask m;
            m.key_padding = x[2];
            return attention_from_projections(x[0], 0, x[1], 0, 64, 64, 2, m);
          }, tol);
  });
}

TEST_F(CudaOps, ShapesAndCopies) {
  check("concat", {rn({2, 3, 4}, 1), rn({2, 5, 4}, 2)}, {true, true},
        [](const std::vector<Tensor>& x) { return concat({x[0], x[1]}, 1); });
  check("slice_select", {rn({6, 7, 8}, 3)}, {true},
        [](const std::vector<Tensor>& x) { return mul_scalar(x[0].slice(1, 2, 5).select(2, 3), 2.0); });
  check("permute_contiguous", {rn({2, 3, 4, 5, 6}, 4)}, {true},
        [](const std::vector<Tensor>& x) { return x[0].permute({4, 2, 0, 3, 1}).contiguous(); });
  check("patchify_reshape", {rn({2, 3, 32, 32}, 5)}, {true}, [](const std::vector<Tensor>& x) {
    return x[0].reshape({2, 3, 4, 8, 4, 8}).permute({0, 2, 4, 1, 3, 5}).reshape({2, 16, 192});
  });
  check("expand", {rn({1, 5}, 6)}, {true},
        [](const std::vector<Tensor>& x) { return mul(x[0].expand({4, 5}), x[0].expand({4, 5})); });
  check("to_f64_and_back", {rn({33}, 7)}, {true},
        [](const std::vector<Tensor>& x) { return mul_scalar(x[0].to(DType::f64), 2.0).to(DType::f32); });
}

TEST_F(CudaOps, AdamWAndGradNorm) {
  std::vector<std::pair<std::string, Tensor>> cpu_params, gpu_params;
  const std::vector<Shape> shapes = {{64, 32}, {32}, {7, 3, 5}};
  for (size_t i = 0; i < shapes.size(); ++i) {
    Tensor p = rn(shapes[i], 10 + i);
    Tensor pc = p.clone().detach().set_requires_grad(true);
    Tensor pg = p.cuda().detach().set_requires_grad(true);
    cpu_params.emplace_back("w" + std::to_string(i), pc);
    gpu_params.emplace_back("w" + std::to_string(i), pg);
  }
  AdamWOptions o;
  o.lr = 1e-2;
  AdamW cpu_opt(cpu_params, o), gpu_opt(gpu_params, o);
  for (int step = 0; step < 5; ++step) {
    for (size_t i = 0; i < shapes.size(); ++i) {
      Tensor g = rn(shapes[i], 100 * step + i);
      cpu_params[i].second.set_grad(g.clone());
      gpu_params[i].second.set_grad(g.cuda());
    }
    std::vector<Tensor> pc, pg;
    for (auto& [n, t] : cpu_params) pc.push_back(t);
    for (auto& [n, t] : gpu_params) pg.push_back(t);
    const double nc = clip_grad_norm(pc, 5.0), ng = clip_grad_norm(pg, 5.0);
    EXPECT_NEAR(ng, nc, 1e-5 * nc);
    cpu_opt.step(o.lr);
    gpu_opt.step(o.lr);
  }
  for (size_t i = 0; i < shapes.size(); ++i) {
    const double e = nmse(gpu_params[i].second, cpu_params[i].second);
    std::printf("[parity] adamw param%zu nmse=%.2e %s\n", i, e, e <= kF32 ? "ok" : "FAIL");
    EXPECT_LE(e, kF32);
  }
}

#ifdef COCA_WITH_CUDA  // (calls the per-tensor kernel, which CPU-only builds lack)
// The fused path (clip_grad_norm_deferred, then one AdamW launch with the scale read on the
// device) against clip_grad_norm then the per-tensor kernel: bit for bit, the gradients left
// as they were; and against the CPU AdamW. Tensors span one and several 64K chunks.
TEST_F(CudaOps, FusedClipAndAdamWMatchPerTensor) {
  const std::vector<Shape> shapes = {{1}, {7, 3}, {65536 + 5}, {300, 257}};
  std::vector<std::pair<std::string, Tensor>> fused, cpu;
  std::vector<Tensor> ref, ref_m, ref_v;
  for (size_t i = 0; i < shapes.size(); ++i) {
    Tensor p = rn(shapes[i], 40 + i);
    fused.emplace_back(i % 2 ? "w" + std::to_string(i) : "bias" + std::to_string(i),
                       p.cuda().detach().set_requires_grad(true));
    cpu.emplace_back(fused.back().first, p.clone().detach().set_requires_grad(true));
    ref.push_back(p.cuda().detach().set_requires_grad(true));
    ref_m.push_back(Tensor::zeros(shapes[i], DType::f32, Device::CUDA));
    ref_v.push_back(Tensor::zeros(shapes[i], DType::f32, Device::CUDA));
  }
  AdamWOptions o;
  o.lr = 1e-2;
  o.weight_decay = 0.1;
  AdamW fused_opt(fused, o), cpu_opt(cpu, o);
  // Clipping on, off (a norm below max_norm), on, and none asked for.
  const std::vector<double> max_norms = {1.0, 1e9, 3.0, 0.0};
  for (size_t step = 0; step < max_norms.size(); ++step) {
    std::vector<Tensor> pf, pc, grads;
    for (size_t i = 0; i < shapes.size(); ++i) {
      Tensor g = rn(shapes[i], 1000 * step + i, 0.5);
      grads.push_back(g);
      fused[i].second.set_grad(g.cuda());
      cpu[i].second.set_grad(g.clone());
      ref[i].set_grad(g.cuda());
      pf.push_back(fused[i].second);
      pc.push_back(cpu[i].second);
    }
    const GradNorm gn = clip_grad_norm_deferred(pf, max_norms[step]);
    ASSERT_TRUE(gn.norm_scale.defined());
    const double ref_norm = clip_grad_norm(ref, max_norms[step]);
    EXPECT_EQ(gn.norm(), ref_norm) << "step " << step;
    EXPECT_NEAR(clip_grad_norm(pc, max_norms[step]), ref_norm, 1e-6 * ref_norm);
    fused_opt.step(o.lr, gn.norm_scale);
    cpu_opt.step(o.lr);
    const double t = static_cast<double>(step + 1);
    const double bc1 = 1.0 - std::pow(o.beta1, t), bc2 = 1.0 - std::pow(o.beta2, t);
    for (size_t i = 0; i < shapes.size(); ++i) {
      Tensor g = ref[i].grad();
      const bool decay = excluded_from_weight_decay(fused[i].first, fused[i].second) ? false : true;
      cuda::adamw_step(ref[i], ref_m[i], ref_v[i], g, o.beta1, o.beta2, o.eps,
                       decay ? 1.0 - o.lr * o.weight_decay : 1.0, o.lr / bc1, std::sqrt(bc2));
      // The fused step read the scaled gradient but left it as it was.
      EXPECT_EQ(fused[i].second.grad().to(Device::CPU).to_vector<float>(), grads[i].to_vector<float>()) << i;
    }
  }
  for (size_t i = 0; i < shapes.size(); ++i) {
    EXPECT_EQ(fused[i].second.to(Device::CPU).to_vector<float>(), ref[i].to(Device::CPU).to_vector<float>())
        << "parameter " << i << " differs from the per-tensor kernel's";
    EXPECT_EQ(fused_opt.slots()[i].v.to(Device::CPU).to_vector<float>(), ref_v[i].to(Device::CPU).to_vector<float>());
    const double e = nmse(fused[i].second, cpu[i].second);
    std::printf("[parity] fused adamw param%zu (%lld values) nmse vs cpu=%.2e %s\n", i,
                static_cast<long long>(fused[i].second.numel()), e, e <= kF32 ? "ok" : "FAIL");
    EXPECT_LE(e, kF32);
  }
}
#endif

// One rank: NCCL's all-reduce and all-gather (through the communicator coca-train uses) must
// give the single-process result exactly (what the MPI path gives at W=1).
TEST_F(CudaOps, NcclSingleRankMatchesSingleProcess) {
  auto mpi = dist::init(nullptr, nullptr);
  ASSERT_EQ(mpi->size(), 1) << "run this test without mpirun";
  auto comm = dist::make_nccl_communicator(*mpi);
  Tensor a = rn({1000, 3}, 1);
  Tensor g = a.cuda();
  comm->all_reduce(g, dist::ReduceOp::Sum);
  const double e1 = nmse(g, a);
  Tensor gathered = Tensor::empty({1000, 3}, DType::f32, Device::CUDA);
  comm->all_gather(a.cuda(), gathered);
  const double e2 = nmse(gathered, a);
  std::printf("[parity] nccl W=1 all_reduce nmse=%.2e all_gather nmse=%.2e %s\n", e1, e2,
              e1 == 0 && e2 == 0 ? "ok" : "FAIL");
  EXPECT_EQ(e1, 0.0);
  EXPECT_EQ(e2, 0.0);
}
