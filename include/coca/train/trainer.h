#pragma once
// The coca-train loop: per-rank shard loading, global-batch CoCa loss, bucketed gradient
// all-reduce, AdamW (optionally ZeRO-1), checkpoints with exact resume, signals, metrics.
#include "coca/train/options.h"

namespace coca::train {

// Runs training to completion (or to a stop request); returns the process exit code.
// Errors are thrown as coca::Error; the caller reports them and aborts the job.
int run_training(TrainOptions opts);

}  // namespace coca::train
