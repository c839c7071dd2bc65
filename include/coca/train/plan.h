#pragma once
// The step plan of a run: how many optimizer steps each epoch has and where the run ends.
// An epoch has floor(B_e / accum_freq) steps, where B_e is the loader's lockstep batch count
// of that epoch (coca::batches_per_epoch, the same function the loader ends its epoch by), so
// the trainer and the loader agree by construction whatever the shard sizes, ranks and seed.
// Epochs can differ in length: each epoch permutes the shards over the ranks anew.
#include <cstdint>
#include <functional>

namespace coca::train {

struct StepPlan {
  int64_t total_steps = 0;     // the step the run ends at (the schedule's end)
  int64_t epoch_end_step = 0;  // the step at which the current epoch ends
  int64_t cooldown_steps = 0;  // steps of the last `epochs_cooldown` epochs (const-cooldown)
};

struct PlanInputs {
  int64_t step = 0;             // optimizer steps already taken
  int64_t epoch = 0;            // the current epoch
  int64_t epoch_batches = 0;    // the loader's batches per rank in the current epoch (segment)
  int64_t batches_taken = 0;    // of which the run has taken this many already
  int64_t epochs = 1;
  int accum_freq = 1;
  int64_t max_steps = 0;        // 0: no limit
  int64_t epochs_cooldown = 0;
  // Batches per rank of a whole epoch e (the loader's batches_per_epoch).
  std::function<int64_t(int64_t)> batches_of_epoch;
};

StepPlan plan_steps(const PlanInputs& in);

}  // namespace coca::train
