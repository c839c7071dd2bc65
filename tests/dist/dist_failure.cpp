// A training loop in which rank 1 fails in the middle of step 2, for the failure tests:
//   dist_failure kill|throw|hang <marker dir>
// kill: rank 1 SIGKILLs itself after the forward pass (the others are about to enter the
// backward collectives); throw: rank 1 throws a coca::Error there, which main turns into a
// job abort naming the rank; hang: rank 1 stops answering (sleeps) without dying, so the others'
// next collective times out (COCA_COLLECTIVE_TIMEOUT_S) and aborts the job. A rank that finishes the loop writes <dir>/rank<R>.done, which the
// test treats as a failure (a survivor must not carry on as if nothing happened).
#include <signal.h>
#include <unistd.h>

#include <fstream>

#include "coca/dist/autograd.h"
#include "coca/dist/bucketer.h"
#include "coca/optim/adamw.h"
#include "model/micro.h"

using namespace coca;

int main(int argc, char** argv) {
  auto world = dist::init(&argc, &argv);
  try {
    COCA_CHECK(argc == 3, "usage: dist_failure kill|throw|hang <marker dir>");
    const std::string mode = argv[1];
    COCA_CHECK(mode == "kill" || mode == "throw" || mode == "hang", "dist_failure: unknown mode '", mode, "'");
    CoCa model(test::micro_config(), DType::f32);
    dist::broadcast_parameters(*world, model);
    dist::GradientBucketer grads(world, model.named_parameters());
    AdamW opt(model.named_parameters(), {});
    const auto ctx = dist::make_loss_context(world);
    Generator gen(world->rank());
    for (int step = 0; step < 5; ++step) {
      Tensor images = Tensor::randn({2, 3, 16, 16}, gen);
      Tensor tokens = test::micro_tokens({3, 5}, 7, 50, gen);
      model.zero_grad();
      auto losses = coca_loss(model.forward(images, tokens), tokens, 0, {}, ctx);
      if (step == 2 && world->rank() == 1) {
        if (mode == "kill") kill(getpid(), SIGKILL);
        if (mode == "hang") sleep(600);
        throw Error("injected failure in step 2 (dist_failure throw)");
      }
      losses.total.backward();
      grads.finish();
      opt.step(1e-4);
    }
    std::ofstream(std::string(argv[2]) + "/rank" + std::to_string(world->rank()) + ".done") << "finished\n";
  } catch (const std::exception& e) {
    dist::fatal(e.what());
  }
  return 0;
}
