// MPI collectives for every dtype, argument errors, the collective timeout, and the float64
// gradient check of all_gather_with_grad across ranks.
#include <gtest/gtest.h>

#include "coca/autograd/ops.h"
#include "coca/dist/autograd.h"
#include "dist_test.h"

using namespace coca;
using test::g_world;

namespace {

Tensor filled(int64_t n, DType dt, const std::function<double(int64_t)>& f) {
  std::vector<double> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = f(i);
  return Tensor::from_vector(v, {n}).to(dt);
}

}  // namespace

class Collectives : public ::testing::TestWithParam<DType> {};

TEST_P(Collectives, SumAverageGatherScatterBroadcast) {
  const DType dt = GetParam();
  const int W = g_world->size(), r = g_world->rank();
  // Small integers: exact in every dtype, bf16 included.
  Tensor t = filled(4, dt, [&](int64_t i) { return (r + 1) * (i + 1) * W; });
  g_world->all_reduce(t, dist::ReduceOp::Sum);
  Tensor a = filled(4, dt, [&](int64_t i) { return (r + 1) * (i + 1) * W; });
  g_world->all_reduce(a, dist::ReduceOp::Average);
  Tensor in = filled(3, dt, [&](int64_t i) { return r * 10 + i; }), gathered = Tensor::empty({3 * W}, dt);
  g_world->all_gather(in, gathered);
  Tensor big = filled(2 * W, dt, [&](int64_t j) { return (r + 1) * (j + 1); }), mine = Tensor::empty({2}, dt);
  g_world->reduce_scatter(big, mine, dist::ReduceOp::Sum);
  Tensor b = filled(2, dt, [&](int64_t) { return r; });
  g_world->broadcast(b, W - 1);
  g_world->barrier();

  const double tri = W * (W + 1) / 2.0;
  auto tv = t.to_double_vector(), av = a.to_double_vector(), gv = gathered.to_double_vector();
  for (int64_t i = 0; i < 4; ++i) {
    EXPECT_EQ(tv[i], (i + 1) * W * tri) << dtype_name(dt);
    EXPECT_EQ(av[i], (i + 1) * tri) << dtype_name(dt);
  }
  for (int q = 0; q < W; ++q)
    for (int i = 0; i < 3; ++i) EXPECT_EQ(gv[q * 3 + i], q * 10 + i) << dtype_name(dt);
  auto mv = mine.to_double_vector();
  for (int i = 0; i < 2; ++i) EXPECT_EQ(mv[i], (r * 2 + i + 1) * tri) << dtype_name(dt);
  for (double v : b.to_double_vector()) EXPECT_EQ(v, W - 1);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, Collectives, ::testing::Values(DType::f32, DType::f64, DType::bf16, DType::i32),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(Collectives, AverageOfInt32Truncates) {
  const int W = g_world->size();
  Tensor t = Tensor::from_vector(std::vector<int32_t>{g_world->rank() == 0 ? 1 : 0}, {1});
  g_world->all_reduce(t, dist::ReduceOp::Average);
  EXPECT_EQ(t.to_vector<int32_t>()[0], W == 1 ? 1 : 0);
}

TEST(Collectives, BadArgumentsAreNamed) {
  // Thrown before any message is sent, identically on every rank.
  Tensor nc = Tensor::zeros({3, 4}).t();
  try {
    g_world->all_reduce(nc, dist::ReduceOp::Sum);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("all_reduce"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("not contiguous"), std::string::npos) << e.what();
  }
  Tensor out = Tensor::empty({5});
  EXPECT_THROW(g_world->all_gather(Tensor::zeros({2}), out), Error);
  EXPECT_THROW(g_world->all_reduce(Tensor::zeros({2}, DType::u8), dist::ReduceOp::Sum), Error);
}

TEST(Collectives, TimeoutIsAClearError) {
  if (g_world->size() == 1) GTEST_SKIP() << "needs a peer that does not join";
  dist::CommOptions fast;
  fast.timeout = std::chrono::milliseconds(800);
  dist::MpiCommunicator comm(MPI_COMM_WORLD, fast);
  Tensor t = Tensor::ones({1});
  if (comm.rank() == 0) {
    auto work = comm.all_reduce_async(t, dist::ReduceOp::Sum);
    try {
      work->wait();
      ADD_FAILURE() << "no timeout";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("timed out"), std::string::npos) << msg;
      EXPECT_NE(msg.find("all_reduce"), std::string::npos) << msg;
      EXPECT_NE(msg.find("rank 0"), std::string::npos) << msg;
    }
    g_world->barrier();
    work->wait();  // the peers join now
  } else {
    g_world->barrier();
    comm.all_reduce(t, dist::ReduceOp::Sum);
  }
  EXPECT_EQ(t.item(), g_world->size());
}

TEST(AllGatherWithGrad, Float64GradientCheck) {
  const int W = g_world->size(), r = g_world->rank();
  std::shared_ptr<dist::Communicator> comm = g_world;
  auto input_of = [](int rank) {
    Generator gen(1000 + rank);
    return Tensor::randn({2, 3}, gen, DType::f64);
  };
  Tensor x = input_of(r).set_requires_grad(true);
  Generator wgen(2000 + r);
  Tensor c = Tensor::randn({2 * W, 3}, wgen, DType::f64);  // a different loss on every rank
  auto local_loss = [&] { return sum(mul(tanh(dist::all_gather_with_grad(comm, x)), c)); };

  {  // forward: rank order along dim 0
    NoGradGuard ng;
    Tensor y = dist::all_gather_with_grad(comm, x);
    ASSERT_EQ(y.shape(), (Shape{2 * W, 3}));
    for (int q = 0; q < W; ++q) EXPECT_EQ(test::rel_err(y.slice(0, 2 * q, 2 * q + 2), input_of(q)), 0.0);
  }
  local_loss().backward();
  auto analytic = x.grad().to_double_vector();
  // The global loss is the sum of every rank's loss; perturb one entry of one rank at a time.
  double* xp = x.data<double>();
  const double h = 1e-6;
  for (int owner = 0; owner < W; ++owner) {
    for (int i = 0; i < 6; ++i) {
      NoGradGuard ng;
      const double saved = xp[i];
      if (r == owner) xp[i] = saved + h;
      const double up = g_world->sum(local_loss().item());
      if (r == owner) xp[i] = saved - h;
      const double down = g_world->sum(local_loss().item());
      if (r == owner) {
        xp[i] = saved;
        const double numeric = (up - down) / (2 * h);
        EXPECT_NEAR(analytic[i], numeric, 1e-8 * std::max(1.0, std::abs(numeric))) << "rank " << r << " entry " << i;
      }
    }
  }
}

TEST(LossContext, UnequalRowCountsAreNamed) {
  if (g_world->size() == 1) GTEST_SKIP() << "one rank";
  auto ctx = dist::make_loss_context(g_world);
  Tensor x = Tensor::zeros({g_world->rank() == 0 ? 3 : 2, 4});
  try {
    ctx.gather(x);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("holds 2 rows but rank 0 holds 3"), std::string::npos) << e.what();
  }
}
