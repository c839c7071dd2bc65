#pragma once
// Gradient accumulation with OpenCLIP's meaning of --accum-freq: the contrastive negatives of a
// step span all k micro-batches on all W ranks (k x W x b samples), not one micro-batch.
//
// A first pass computes every micro-batch's image and text features without a graph and keeps
// them. Then each micro-batch j runs again with gradient: its live features take their place
// among the kept ones, the contrastive loss is taken over all of them (this rank's k x b rows
// against the gathered k x W x b columns), and the caption loss of micro-batch j is normalised
// by the step's token count over all micro-batches and ranks. Every feature gets its gradient
// once (in its own pass), so the k backward passes add up to the gradient of one batch of
// k x b per rank; logit_scale, which every pass sees, takes 1/k of its gradient from each.
// Memory: one micro-batch's activations plus the kept features ([k b, E] twice).
#include <array>
#include <functional>
#include <vector>

#include "coca/loss/coca_loss.h"
#include "coca/model/coca.h"

namespace coca::train {

struct MicroBatch {
  Tensor images;  // [b, 3, H, W], on the model's device
  Tensor tokens;  // i32 [b, L]: best on the host, where the trimmed forward plans from them
};

// This rank's share of the step's losses: averaged over ranks they are the losses of the
// whole k x W x b batch (total = weights.contrastive x contrastive + weights.caption x caption).
// Scalars on the model's device, without a graph: reading them waits for the device, so the
// trainer reads them together with the gradient norm, once.
struct StepLosses {
  Tensor total, contrastive, caption;
  std::array<double, 3> values() const;  // {total, contrastive, caption}: one copy to the host
};

struct AccumulateHooks {
  // Before each forward of micro-batch j (in both passes): reseeds patch dropout, say, so that
  // the kept features and the live ones are the same.
  std::function<void(int j)> before_forward = [](int) {};
  // Runs the backward of micro-batch j's loss (default: loss.backward()); the trainer holds
  // its gradient all-reduce back until the last one.
  std::function<void(int j, const Tensor& loss)> backward = [](int, const Tensor& loss) { loss.backward(); };
};

// Forward and backward of one optimizer step over `micro` (k >= 1 micro-batches of equal
// size) with the trimmed training forward. Gradients accumulate into the parameters' grads.
// `poison`: the loss of every pass is multiplied by NaN (the trainer's non-finite test hook).
StepLosses accumulate_step(const CoCa& model, const std::vector<MicroBatch>& micro, int64_t pad_id,
                           const LossWeights& weights, const LossContext& ctx, const AccumulateHooks& hooks = {},
                           bool poison = false);

}  // namespace coca::train
