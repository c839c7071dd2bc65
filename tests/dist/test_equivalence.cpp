// Spec section 7: W ranks x n samples give the loss and every gradient of one process on the
// W n samples; after 5 AdamW steps (global-norm clipping, logit_scale clamp) the parameters
// still match, with bucketed overlap, without it, and with ZeRO-1. Ranks hold different
// numbers of non-pad caption tokens.
#include <gtest/gtest.h>

#include <cstdio>

#include "coca/dist/autograd.h"
#include "coca/dist/bucketer.h"
#include "coca/dist/zero.h"
#include "coca/loss/coca_loss.h"
#include "coca/model/coca.h"
#include "coca/optim/adamw.h"
#include "coca/train/accumulate.h"
#include "dist_test.h"
#include "model/micro.h"

using namespace coca;
using test::g_world;

namespace {

constexpr int64_t kPerRank = 2;

struct Batch {
  Tensor images, tokens;
};

// The global batch (identical on every rank). Caption lengths 2..7 cycle with the sample
// index, so each rank's count of non-pad targets differs.
Batch global_batch(int W, DType dt, uint64_t seed) {
  Generator gen(seed);
  const int64_t N = W * kPerRank;
  std::vector<int> lengths(N);
  for (int64_t i = 0; i < N; ++i) lengths[i] = 2 + static_cast<int>((i * 5 + seed) % 6);
  return {Tensor::randn({N, 3, 16, 16}, gen, dt), test::micro_tokens(lengths, 7, 50, gen)};
}

Batch local_slice(const Batch& g, int rank) {
  const int64_t a = rank * kPerRank, b = a + kPerRank;
  return {g.images.slice(0, a, b).contiguous(), g.tokens.slice(0, a, b).contiguous()};
}

// The distributed model starts from a rank-dependent initialisation: the broadcast from rank 0
// must make it identical to the reference (initialised with rank 0's seed).
void init_models(CoCa& ref, CoCa& model) {
  ref.initialize(100);
  model.initialize(100 + g_world->rank());
  dist::broadcast_parameters(*g_world, model);
  auto a = model.named_parameters(), b = ref.named_parameters();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(test::rel_err(a[i].second, b[i].second), 0.0) << a[i].first;
}

double rel(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-300); }

void expect_one_step_matches(DType dt, double tol, dist::BucketOptions opts,
                             const CocaConfig& cfg = test::micro_config()) {
  const int W = g_world->size(), r = g_world->rank();
  CoCa ref(cfg, dt), model(cfg, dt);
  init_models(ref, model);
  dist::GradientBucketer grads(g_world, model.named_parameters(), opts);
  const Batch global = global_batch(W, dt, 1), local = local_slice(global, r);

  auto losses = coca_loss(model.forward(local.images, local.tokens), local.tokens, 0, {}, dist::make_loss_context(g_world));
  losses.total.backward();
  grads.finish();
  auto expected = coca_loss(ref.forward(global.images, global.tokens), global.tokens, 0);
  expected.total.backward();

  // The single-process loss is the mean over ranks of the per-rank losses.
  EXPECT_LE(rel(g_world->sum(losses.total.item()) / W, expected.total.item()), tol);
  EXPECT_LE(rel(g_world->sum(losses.contrastive.item()) / W, expected.contrastive.item()), tol);
  EXPECT_LE(rel(g_world->sum(losses.caption.item()) / W, expected.caption.item()), tol);
  auto mine = model.named_parameters(), theirs = ref.named_parameters();
  for (size_t i = 0; i < mine.size(); ++i) {
    ASSERT_TRUE(mine[i].second.grad().defined()) << mine[i].first;
    EXPECT_LE(test::rel_err(mine[i].second.grad(), theirs[i].second.grad()), tol)
        << "gradient of " << mine[i].first << " on rank " << r << " of " << W;
  }
}

// Float64: every tensor to 1e-10 of its own scale. Float32: to 1e-5 of the model's parameter
// scale (max |p| over all tensors), because a few entries have an exactly-zero true gradient
// (the key part of in_proj_bias: softmax ignores a per-query shift), and AdamW turns their
// rounding noise into updates of about lr * noise / eps on a tensor that is itself near zero.
void expect_five_steps_match(DType dt, bool zero, bool overlap) {
  const int W = g_world->size(), r = g_world->rank();
  const double tol = dt == DType::f64 ? 1e-10 : 1e-5;
  CoCa ref(test::micro_config(), dt), model(test::micro_config(), dt);
  init_models(ref, model);
  AdamWOptions o;
  o.lr = 1e-3;
  AdamW ref_opt(ref.named_parameters(), o);
  dist::BucketOptions bo;
  bo.bucket_bytes = 4096;  // many buckets: exercises the in-order launch
  bo.overlap = overlap;
  bo.shard = zero;
  dist::GradientBucketer grads(g_world, model.named_parameters(), bo);
  std::unique_ptr<AdamW> opt;
  std::unique_ptr<dist::Zero1AdamW> zopt;
  if (zero) zopt = std::make_unique<dist::Zero1AdamW>(grads, o);
  else opt = std::make_unique<AdamW>(model.named_parameters(), o);
  const auto ctx = dist::make_loss_context(g_world);

  for (int step = 0; step < 5; ++step) {
    const Batch global = global_batch(W, dt, 10 + step), local = local_slice(global, r);
    ref_opt.zero_grad();
    coca_loss(ref.forward(global.images, global.tokens), global.tokens, 0).total.backward();
    const double ref_norm = clip_grad_norm(ref.parameters(), 1.0);
    ref_opt.step(o.lr);
    ref.clamp_logit_scale();

    model.zero_grad();
    coca_loss(model.forward(local.images, local.tokens), local.tokens, 0, {}, ctx).total.backward();
    grads.finish();
    const double norm = zero ? zopt->clip_grad_norm(1.0) : clip_grad_norm(model.parameters(), 1.0);
    if (zero) zopt->step(o.lr);
    else opt->step(o.lr);
    model.clamp_logit_scale();
    EXPECT_LE(rel(norm, ref_norm), tol) << "gradient norm at step " << step;
  }
  auto mine = model.named_parameters(), theirs = ref.named_parameters();
  double model_scale = 0, worst = 0;
  for (auto& [name, p] : theirs)
    for (double v : p.to_double_vector()) model_scale = std::max(model_scale, std::abs(v));
  for (size_t i = 0; i < mine.size(); ++i) {
    const double err = test::rel_err(mine[i].second, theirs[i].second);
    const double scale = dt == DType::f64 ? 1.0 : std::max(1e-300, model_scale) /
                                                      std::max(1e-300, test::max_abs(theirs[i].second));
    worst = std::max(worst, err / scale);
    EXPECT_LE(err / scale, tol) << mine[i].first << " after 5 steps on rank " << r << " of " << W
                                << (zero ? " (ZeRO-1)" : "");
  }
  if (r == 0) std::printf("  worst parameter error after 5 steps (%s): %.3g\n", dtype_name(dt), worst);
  if (zero) {  // each rank holds AdamW state for its slice only
    EXPECT_EQ(static_cast<int64_t>(g_world->sum(static_cast<double>(zopt->state_numel()))), model.parameter_count());
    EXPECT_LE(zopt->state_numel(), model.parameter_count() / W + 64 * static_cast<int64_t>(grads.buckets().size()));
  }
}

// --accum-freq k with OpenCLIP's meaning: k micro-batches of b samples on each of W ranks give
// both losses and every gradient of one process on the whole k x W x b batch (float64).
void expect_accumulation_matches(int k, const CocaConfig& cfg = test::micro_config()) {
  const int W = g_world->size(), r = g_world->rank();
  const DType dt = DType::f64;
  const double tol = 1e-10;
  CoCa ref(cfg, dt), model(cfg, dt);
  init_models(ref, model);
  const int64_t b = kPerRank, N = static_cast<int64_t>(W) * k * b;
  Generator gen(70 + k);
  std::vector<int> lengths(N);
  for (int64_t i = 0; i < N; ++i) lengths[i] = 2 + static_cast<int>((i * 5 + k) % 6);
  const Batch global{Tensor::randn({N, 3, 16, 16}, gen, dt), test::micro_tokens(lengths, 7, 50, gen)};
  std::vector<train::MicroBatch> micro;
  for (int j = 0; j < k; ++j) {
    const int64_t a = (static_cast<int64_t>(r) * k + j) * b;
    micro.push_back({global.images.slice(0, a, a + b).contiguous(), global.tokens.slice(0, a, a + b).contiguous()});
  }
  const train::StepLosses got = train::accumulate_step(model, micro, 0, {}, dist::make_loss_context(g_world));
  for (auto& [name, p] : model.named_parameters())  // the rank average, as the bucketer takes it
    g_world->all_reduce_async(p.grad(), dist::ReduceOp::Average)->wait();
  auto expected = coca_loss(ref.forward(global.images, global.tokens), global.tokens, 0);
  expected.total.backward();

  const auto [total, contrastive, caption] = got.values();
  EXPECT_LE(rel(g_world->sum(total) / W, expected.total.item()), tol) << "k " << k;
  EXPECT_LE(rel(g_world->sum(contrastive) / W, expected.contrastive.item()), tol) << "k " << k;
  EXPECT_LE(rel(g_world->sum(caption) / W, expected.caption.item()), tol) << "k " << k;
  auto mine = model.named_parameters(), theirs = ref.named_parameters();
  for (size_t i = 0; i < mine.size(); ++i) {
    ASSERT_TRUE(mine[i].second.grad().defined()) << mine[i].first;
    EXPECT_LE(test::rel_err(mine[i].second.grad(), theirs[i].second.grad()), tol)
        << "gradient of " << mine[i].first << " with --accum-freq " << k << " on rank " << r << " of " << W;
  }
}

}  // namespace

TEST(DistEquivalence, AccumulationEqualsOneBatchFloat64) {
  for (int k : {1, 2, 4}) expect_accumulation_matches(k);
}

TEST(DistEquivalence, OneStepFloat64SmallBuckets) {
  dist::BucketOptions o;
  o.bucket_bytes = 2048;
  expect_one_step_matches(DType::f64, 1e-10, o);
}

TEST(DistEquivalence, OneStepFloat32) { expect_one_step_matches(DType::f32, 1e-5, {}); }

// OpenCLIP's CLIP (contrastive loss only, class-token and end-of-text pooling): W ranks give one
// process's loss and gradients, in one step and with --accum-freq 2.
TEST(DistEquivalence, ClipOneStepAndAccumulationFloat64) {
  dist::BucketOptions o;
  o.bucket_bytes = 2048;
  expect_one_step_matches(DType::f64, 1e-10, o, test::micro_clip_config());
  expect_accumulation_matches(2, test::micro_clip_config());
}

TEST(DistEquivalence, OneStepFloat64NoOverlap) {
  dist::BucketOptions o;
  o.bucket_bytes = 2048;
  o.overlap = false;
  expect_one_step_matches(DType::f64, 1e-10, o);
}

TEST(DistEquivalence, FiveAdamWStepsFloat64BucketedOverlap) { expect_five_steps_match(DType::f64, false, true); }
TEST(DistEquivalence, FiveAdamWStepsFloat64Zero1) { expect_five_steps_match(DType::f64, true, true); }
TEST(DistEquivalence, FiveAdamWStepsFloat32BucketedOverlap) { expect_five_steps_match(DType::f32, false, true); }
TEST(DistEquivalence, FiveAdamWStepsFloat32NoOverlap) { expect_five_steps_match(DType::f32, false, false); }
TEST(DistEquivalence, FiveAdamWStepsFloat32Zero1) { expect_five_steps_match(DType::f32, true, true); }
