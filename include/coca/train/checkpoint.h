#pragma once
// Checkpoints: <logs>/<name>/checkpoints/step_000123/ with model.safetensors (OpenCLIP names),
// optimizer.safetensors (AdamW moments, or optimizer_rank<r>.safetensors per rank with ZeRO-1)
// and state.json. A checkpoint is written into step_000123.tmp/ and renamed when complete;
// the file `latest` names the newest complete one and is replaced atomically.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "coca/optim/adamw.h"
#include "coca/tensor/safetensors.h"

namespace coca::train {

std::string checkpoint_name(int64_t step);  // "step_000123"

// Resolves --resume: a checkpoint directory, or "latest" (from <run_dir>/checkpoints/latest).
// Throws naming what is missing.
std::string resolve_resume(const std::string& resume, const std::string& run_dir);

// Optimizer moments as named tensors ("<param>.exp_avg", "<param>.exp_avg_sq", "step").
NamedTensors optimizer_tensors(const AdamW& opt);
void restore_optimizer(AdamW& opt, const NamedTensors& tensors, const std::string& source);

// Renames tmp -> final, points `latest` at it and deletes all but the newest `keep`.
void publish_checkpoint(const std::string& checkpoints_dir, const std::string& name, int keep);

void write_json_atomic(const std::string& path, const nlohmann::json& j);
nlohmann::json read_json(const std::string& path);

}  // namespace coca::train
