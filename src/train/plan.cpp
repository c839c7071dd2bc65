#include "coca/train/plan.h"

#include <algorithm>

#include "coca/tensor/error.h"

namespace coca::train {

StepPlan plan_steps(const PlanInputs& in) {
  COCA_CHECK(in.accum_freq >= 1, "plan: --accum-freq must be positive");
  COCA_CHECK(in.batches_taken >= 0 && in.batches_taken <= in.epoch_batches, "plan: ", in.batches_taken,
             " batches taken of an epoch of ", in.epoch_batches);
  StepPlan p;
  // Whole steps of this epoch minus those already taken; a leftover of fewer than accum_freq
  // batches at the end of an epoch is not a step.
  p.epoch_end_step = in.step + in.epoch_batches / in.accum_freq - in.batches_taken / in.accum_freq;
  p.total_steps = p.epoch_end_step;
  for (int64_t e = in.epoch + 1; e < in.epochs; ++e) p.total_steps += in.batches_of_epoch(e) / in.accum_freq;
  if (in.max_steps > 0) p.total_steps = std::min(p.total_steps, in.max_steps);
  for (int64_t e = std::max<int64_t>(0, in.epochs - in.epochs_cooldown); e < in.epochs; ++e)
    p.cooldown_steps += in.batches_of_epoch(e) / in.accum_freq;
  return p;
}

}  // namespace coca::train
