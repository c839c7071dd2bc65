#pragma once
// ZeRO stage 1: each rank keeps AdamW state (m, v) for its 1/W slice of every bucket only.
// With a GradientBucketer in shard mode (reduce-scatter of the averaged gradients), step()
// updates this rank's slice with the ordinary AdamW math and all-gathers the parameters, so the
// result equals AdamW on the all-reduced gradients.
#include <memory>
#include <vector>

#include "coca/dist/bucketer.h"
#include "coca/optim/adamw.h"
#include "coca/tensor/safetensors.h"

namespace coca::dist {

class Zero1AdamW {
 public:
  // `grads` must be in shard mode, outlive this optimizer, and live on the CPU (AdamW's math).
  Zero1AdamW(GradientBucketer& grads, AdamWOptions opts);
  // Global-norm clipping of the averaged gradient (over every parameter, all ranks); returns
  // the norm before clipping. Call after GradientBucketer::finish(), before step().
  double clip_grad_norm(double max_norm);
  // Updates this rank's slice and all-gathers every parameter. Parameters are re-read at each
  // step, so in-place edits between steps (clamp_logit_scale) are kept.
  void step(double lr);
  int64_t steps() const { return adamw_->steps(); }

  // The whole optimizer state in AdamW's checkpoint layout (<name>.exp_avg, <name>.exp_avg_sq
  // for every parameter of `named`, in that order, then "step"), assembled with one all-gather
  // per bucket: a collective, every rank must call it; every rank gets the full state. A
  // checkpoint saved from it resumes with or without --zero1.
  NamedTensors state_dict(const std::vector<std::pair<std::string, Tensor>>& named);
  // Takes this rank's slices from a full state (as state_dict writes it, or AdamW's
  // optimizer_tensors). Throws one line naming `source` and every missing or mis-shaped entry.
  void load_state_dict(const NamedTensors& state, const std::string& source);
  int64_t state_numel() const;  // elements of m (= of v) held by this rank

 private:
  struct Segment {
    size_t bucket;
    std::string name;      // the parameter's
    Tensor param;          // the whole parameter
    int64_t param_offset;  // first element of the parameter in this rank's slice
    int64_t shard_offset;  // where it lands in the bucket's shard
    int64_t numel;
  };
  GradientBucketer& grads_;
  std::vector<Tensor> param_shards_;  // per bucket: [padded / W], this rank's slice of the parameters
  std::vector<Segment> segments_;
  std::vector<Tensor> segment_params_, segment_grads_;  // 1-D views into the shards
  std::unique_ptr<AdamW> adamw_;
};

}  // namespace coca::dist
