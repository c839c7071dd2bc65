// NCCL backend (label cuda): collectives on device buffers for every dtype, and the gradient
// equivalence of spec section 7 with the buckets on the GPU (W = 1 on one GPU; W = 2 where a
// host has two). The model itself still runs on the CPU (the CUDA tensor backend is separate
// work): CPU gradients are staged into device buckets and averaged by NCCL. Skips cleanly
// without a GPU.
#include <gtest/gtest.h>

#include "coca/dist/autograd.h"
#include "coca/dist/bucketer.h"
#include "coca/dist/nccl.h"
#include "coca/kernels/cuda/runtime.h"
#include "coca/loss/coca_loss.h"
#include "dist_test.h"
#include "model/micro.h"

#ifdef COCA_WITH_CUDA
#include <cuda_runtime.h>

#include "coca/kernels/cuda/check.h"
#endif

using namespace coca;
using test::g_world;

namespace {

#ifdef COCA_WITH_CUDA
Tensor to_device(const Tensor& cpu) {
  Tensor d = Tensor::empty(cpu.shape(), cpu.dtype(), Device::CUDA);
  COCA_CUDA_CHECK(cudaMemcpy(d.raw_data(), cpu.contiguous().raw_data(), cpu.numel() * dtype_size(cpu.dtype()),
                             cudaMemcpyHostToDevice));
  return d;
}
Tensor to_host(const Tensor& dev) {
  COCA_CUDA_CHECK(cudaDeviceSynchronize());
  Tensor h = Tensor::empty(dev.shape(), dev.dtype());
  COCA_CUDA_CHECK(cudaMemcpy(h.raw_data(), dev.raw_data(), dev.numel() * dtype_size(dev.dtype()), cudaMemcpyDeviceToHost));
  return h;
}
#endif

// Decided identically on every rank, so that all of them skip or none does.
bool gpus_for_every_rank() {
  const double ok = g_world->sum(coca::cuda::device_count() > g_world->local_rank() ? 1.0 : 0.0);
  return ok == g_world->size();
}

}  // namespace

TEST(Nccl, CollectivesEveryDtype) {
  if (!gpus_for_every_rank()) GTEST_SKIP() << "no GPU for every rank (coca::cuda::device_count() == "
                                           << coca::cuda::device_count() << ")";
#ifdef COCA_WITH_CUDA
  auto nccl = dist::make_nccl_communicator(*g_world);
  const int W = nccl->size(), r = nccl->rank();
  const double tri = W * (W + 1) / 2.0;
  for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::i32}) {
    std::vector<double> v{1.0 * (r + 1), 2.0 * (r + 1) * W};
    Tensor s = to_device(Tensor::from_vector(v, {2}).to(dt)), a = to_device(Tensor::from_vector(v, {2}).to(dt));
    nccl->all_reduce(s, dist::ReduceOp::Sum);
    nccl->all_reduce(a, dist::ReduceOp::Average);
    Tensor g = Tensor::empty({2 * W}, dt, Device::CUDA);
    nccl->all_gather(to_device(Tensor::from_vector(std::vector<double>{10.0 * r, 10.0 * r + 1}, {2}).to(dt)), g);
    Tensor rs = Tensor::empty({1}, dt, Device::CUDA);
    std::vector<double> ones(W, 1.0);
    nccl->reduce_scatter(to_device(Tensor::from_vector(ones, {W}).to(dt)), rs, dist::ReduceOp::Sum);
    Tensor b = to_device(Tensor::from_vector(std::vector<double>{1.0 * r}, {1}).to(dt));
    nccl->broadcast(b, W - 1);
    nccl->barrier();
    auto sv = to_host(s).to_double_vector(), av = to_host(a).to_double_vector(), gv = to_host(g).to_double_vector();
    EXPECT_EQ(sv[0], tri) << dtype_name(dt);
    EXPECT_EQ(sv[1], 2 * W * tri) << dtype_name(dt);
    EXPECT_EQ(av[1], 2 * tri) << dtype_name(dt);
    for (int q = 0; q < W; ++q) EXPECT_EQ(gv[2 * q + 1], 10.0 * q + 1) << dtype_name(dt);
    EXPECT_EQ(to_host(rs).item(), W) << dtype_name(dt);
    EXPECT_EQ(to_host(b).item(), W - 1) << dtype_name(dt);
  }
#endif
}

TEST(Nccl, GradientEquivalenceWithDeviceBuckets) {
  if (!gpus_for_every_rank()) GTEST_SKIP() << "no GPU for every rank (coca::cuda::device_count() == "
                                           << coca::cuda::device_count() << ")";
  const int W = g_world->size(), r = g_world->rank();
  auto nccl = dist::make_nccl_communicator(*g_world);
  CoCa ref(test::micro_config(), DType::f64), model(test::micro_config(), DType::f64);
  ref.initialize(100);
  model.initialize(100);
  dist::BucketOptions bo;
  bo.bucket_bytes = 2048;
  dist::GradientBucketer grads(nccl, model.named_parameters(), bo);
  Generator gen(1);
  const int64_t n = 2, N = n * W;
  std::vector<int> lengths(N);
  for (int64_t i = 0; i < N; ++i) lengths[i] = 2 + static_cast<int>((i * 5 + 1) % 6);
  Tensor images = Tensor::randn({N, 3, 16, 16}, gen, DType::f64), tokens = test::micro_tokens(lengths, 7, 50, gen);
  Tensor li = images.slice(0, r * n, r * n + n).contiguous(), lt = tokens.slice(0, r * n, r * n + n).contiguous();
  coca_loss(model.forward(li, lt), lt, 0, {}, dist::make_loss_context(g_world)).total.backward();
  grads.finish();
  coca_loss(ref.forward(images, tokens), tokens, 0).total.backward();
  auto mine = model.named_parameters(), theirs = ref.named_parameters();
  for (size_t i = 0; i < mine.size(); ++i)
    EXPECT_LE(test::rel_err(mine[i].second.grad(), theirs[i].second.grad()), 1e-10) << mine[i].first;
}
