#pragma once
// Checkpoints: <logs>/<name>/checkpoints/step_000123/ with model.safetensors (OpenCLIP names),
// optimizer.safetensors (AdamW moments; with ZeRO-1 the whole state, assembled) and state.json.
//
// A save writes step_000123.tmp/, then publish_checkpoint() makes it durable (fsync of every
// file and directory), renames it to step_000123/, and replaces the file `latest` (which names
// the newest complete checkpoint) through latest.tmp, fsyncing the directory after each rename.
// So after a crash at any point, `latest` names a complete, durable checkpoint (or is absent).
// Pruning renames a checkpoint to step_X.deleting before removing it, so a crash mid-prune
// leaves a name no one reads. Re-saving an existing step swaps the new copy and the old one in
// one rename (RENAME_EXCHANGE; where the filesystem cannot, the old one is set aside first and the
// next start puts it back if a crash came in between). Leftover *.tmp / *.deleting / latest.tmp
// are removed by clean_checkpoint_dir() when the next run starts (a run directory has one
// trainer at a time).
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "coca/optim/adamw.h"
#include "coca/tensor/safetensors.h"

namespace coca::train {

std::string checkpoint_name(int64_t step);  // "step_000123"
// The step of a published checkpoint's directory name ("step_000123" -> 123); -1 for anything
// else ("step_000123.tmp", "step_000123.deleting", "latest").
int64_t checkpoint_step(const std::string& name);

// The files a complete checkpoint directory holds (what resume reads).
const std::vector<std::string>& checkpoint_files();  // state.json, model.safetensors, optimizer.safetensors

// Resolves --resume: a checkpoint directory, or "latest" (from <run_dir>/checkpoints/latest).
// Throws one line naming what is missing when the directory lacks any of checkpoint_files(),
// or is an unpublished (.tmp) or half-deleted (.deleting) one.
std::string resolve_resume(const std::string& resume, const std::string& run_dir);

// Optimizer moments as named tensors ("<param>.exp_avg", "<param>.exp_avg_sq", "step").
NamedTensors optimizer_tensors(const AdamW& opt);
void restore_optimizer(AdamW& opt, const NamedTensors& tensors, const std::string& source);

// fsync()s every regular file and directory under `dir`, then `dir` itself. Throws naming the
// path and the system's reason.
void sync_directory_tree(const std::string& dir);

// Publishes <checkpoints_dir>/<name>.tmp (complete, all files closed) as <name>, written at
// `step`: syncs it, renames it (replacing an older <name>, e.g. of a rolled-back timeline),
// points `latest` at it, then prunes. Pruning looks only at checkpoints with a step <= `step`
// (this run's history) and keeps the newest `keep` of them by step, the one just written
// always among them; checkpoints with a larger step (from a timeline a --resume rolled back)
// are left alone. Rank 0 only.
void publish_checkpoint(const std::string& checkpoints_dir, const std::string& name, int64_t step, int keep);

// After a failed save (disk full, ...): removes <checkpoints_dir>/<name>.tmp so that the space
// comes back and a restart does not fail on a full disk. Never throws (it runs while another
// error is in flight); a failure to remove is printed to stderr as a warning.
void discard_checkpoint_tmp(const std::string& checkpoints_dir, const std::string& name) noexcept;

// At start, before anything reads or writes checkpoints (rank 0 only): when `latest` names a
// missing step_X, puts a complete step_X.deleting (else step_X.tmp) back under that name; then
// removes the leftovers of an interrupted save or prune (step_*.tmp, step_*.deleting,
// latest.tmp), printing one line per thing restored or removed. A missing directory is fine.
void clean_checkpoint_dir(const std::string& checkpoints_dir);

// Writes through path.tmp, fsync and rename, then fsyncs the parent directory.
// path.tmp written and fsynced, renamed over path, then the directory fsynced: after a crash
// `path` holds either the old or the new content, complete.
void write_file_durable(const std::filesystem::path& path, const std::string& content);
void write_json_atomic(const std::string& path, const nlohmann::json& j);
nlohmann::json read_json(const std::string& path);

}  // namespace coca::train
