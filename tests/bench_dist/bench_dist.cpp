// Step time of a CoCa config (default coca_tiny) at W ranks with the same per-rank batch, and
// the time each rank waits for gradient communication after its backward ends (the part of
// GradientBucketer::finish() that overlap did not hide), as a fraction of the step.
//   OMP_NUM_THREADS=1 mpirun -np 2 bench_dist [--config coca_tiny] [--batch 8] [--steps 6]
//       [--warmup 1] [--bucket-mb 25] [--no-overlap] [--zero]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "coca/dist/autograd.h"
#include "coca/dist/bucketer.h"
#include "coca/dist/zero.h"
#include "coca/optim/adamw.h"
#include "model/micro.h"

using namespace coca;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
  std::string config = "coca_tiny";
  int64_t batch = 8;
  int steps = 6, warmup = 1;
  double bucket_mb = 25;
  bool overlap = true, zero = false;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto value = [&]() -> std::string {
      COCA_CHECK(i + 1 < argc, "bench_dist: ", k, " needs a value");
      return argv[++i];
    };
    if (k == "--config") a.config = value();
    else if (k == "--batch") a.batch = std::stoll(value());
    else if (k == "--steps") a.steps = std::stoi(value());
    else if (k == "--warmup") a.warmup = std::stoi(value());
    else if (k == "--bucket-mb") a.bucket_mb = std::stod(value());
    else if (k == "--no-overlap") a.overlap = false;
    else if (k == "--zero") a.zero = true;
    else throw Error(str_cat("bench_dist: unknown option '", k, "'"));
  }
  COCA_CHECK(a.batch > 0 && a.steps > 0 && a.warmup >= 0, "bench_dist: --batch and --steps must be positive");
  return a;
}

double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

}  // namespace

int main(int argc, char** argv) {
  auto world = dist::init(&argc, &argv);
  try {
    const Args args = parse(argc, argv);
    const int W = world->size(), r = world->rank();
    CocaConfig cfg = CocaConfig::from_file(std::string(COCA_CONFIG_DIR) + "/" + args.config + ".json");
    CoCa model(cfg, DType::f32);
    dist::broadcast_parameters(*world, model);
    dist::BucketOptions bo;
    bo.bucket_bytes = static_cast<size_t>(args.bucket_mb * (1 << 20));
    bo.overlap = args.overlap;
    bo.shard = args.zero;
    dist::GradientBucketer grads(world, model.named_parameters(), bo);
    AdamWOptions o;
    o.lr = 1e-4;
    std::unique_ptr<AdamW> opt;
    std::unique_ptr<dist::Zero1AdamW> zopt;
    if (args.zero) zopt = std::make_unique<dist::Zero1AdamW>(grads, o);
    else opt = std::make_unique<AdamW>(model.named_parameters(), o);
    const auto ctx = dist::make_loss_context(world);
    const int64_t L = cfg.text.context_length, V = cfg.text.vocab_size, S = cfg.vision.image_size;
    Generator gen(17 + r);

    std::vector<double> step_s, wait_s, backward_s;
    for (int step = 0; step < args.warmup + args.steps; ++step) {
      std::vector<int> lengths(args.batch);
      for (auto& len : lengths) len = 2 + static_cast<int>(gen.below(L - 1));
      Tensor images = Tensor::randn({args.batch, 3, S, S}, gen);
      Tensor tokens = test::micro_tokens(lengths, L, V, gen);
      world->barrier();  // every rank starts the step together
      const auto t0 = Clock::now();
      model.zero_grad();
      auto losses = coca_loss(model.forward(images, tokens), tokens, cfg.text.pad_id, {}, ctx);
      const auto t1 = Clock::now();
      losses.total.backward();
      const auto t2 = Clock::now();
      grads.finish();
      if (args.zero) {
        zopt->clip_grad_norm(1.0);
        zopt->step(o.lr);
      } else {
        clip_grad_norm(model.parameters(), 1.0);
        opt->step(o.lr);
      }
      model.clamp_logit_scale();
      const auto t3 = Clock::now();
      if (step >= args.warmup) {
        step_s.push_back(seconds(t0, t3));
        backward_s.push_back(seconds(t1, t2));
        wait_s.push_back(grads.last_wait_seconds());
      }
    }
    auto mean = [](const std::vector<double>& v) {
      double s = 0;
      for (double x : v) s += x;
      return s / v.size();
    };
    // Averages over steps, then over ranks (the slowest rank's wait is also reported).
    const double step = world->sum(mean(step_s)) / W, wait = world->sum(mean(wait_s)) / W;
    const double back = world->sum(mean(backward_s)) / W;
    const auto waits = world->all_gather_value(static_cast<int64_t>(mean(wait_s) * 1e6));
    const double worst_wait = *std::max_element(waits.begin(), waits.end()) / 1e6;
    int64_t buckets = static_cast<int64_t>(grads.buckets().size());
    if (r == 0) {
      std::printf("bench_dist: %s f32, W=%d, per-rank batch %lld, %lld params in %lld bucket(s) of <= %.1f MB, "
                  "overlap %s, ZeRO-1 %s, %d steps after %d warm-up\n",
                  args.config.c_str(), W, static_cast<long long>(args.batch),
                  static_cast<long long>(model.parameter_count()), static_cast<long long>(buckets), args.bucket_mb,
                  args.overlap ? "on" : "off", args.zero ? "on" : "off", args.steps, args.warmup);
      std::printf("  step %.3f s (backward %.3f s); gradient wait after backward %.4f s = %.2f%% of the step "
                  "(slowest rank %.4f s = %.2f%%)\n",
                  step, back, wait, 100 * wait / step, worst_wait, 100 * worst_wait / step);
    }
  } catch (const std::exception& e) {
    dist::fatal(e.what());
  }
  return 0;
}
