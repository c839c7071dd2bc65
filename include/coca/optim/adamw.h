#pragma once
// AdamW with decoupled weight decay (PyTorch's update order), global-norm gradient clipping,
// and the learning-rate schedules OpenCLIP offers.
#include <string>
#include <vector>

#include "coca/nn/module.h"

namespace coca {

struct AdamWOptions {
  double lr = 5e-4;
  double beta1 = 0.9, beta2 = 0.98, eps = 1e-6;
  double weight_decay = 0.2;
};

// OpenCLIP's exclusion rule plus the spec's list: no decay on tensors with ndim <= 1,
// embeddings, logit_scale, cls_emb, class_embedding, positional embeddings, the pooler query.
bool excluded_from_weight_decay(const std::string& name, const Tensor& t);

class AdamW {
 public:
  AdamW(std::vector<std::pair<std::string, Tensor>> params, AdamWOptions opts);
  // One update with the current gradients (parameters without a gradient are skipped); the
  // CUDA parameters in one launch per dtype. norm_scale: clip_grad_norm_deferred's device
  // [norm, scale], applied to the CUDA gradients as they are read (undefined: none).
  void step(double lr, const Tensor& norm_scale = Tensor());
  void zero_grad();
  int64_t steps() const { return step_; }
  const AdamWOptions& options() const { return opts_; }

  struct Slot {
    std::string name;
    Tensor param, m, v;  // m, v: f32/f64 like the parameter
    bool decay;
  };
  std::vector<Slot>& slots() { return slots_; }
  const std::vector<Slot>& slots() const { return slots_; }
  void set_steps(int64_t s) { step_ = s; }

 private:
  std::vector<Slot> slots_;
  AdamWOptions opts_;
  int64_t step_ = 0;
};

// sqrt(sum of squared gradient entries) over all params with a gradient.
double global_grad_norm(const std::vector<Tensor>& params);
// Scales gradients so that their global norm is at most max_norm; returns the norm before.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

// clip_grad_norm for a step that ends in AdamW::step(lr, norm_scale): where every gradient is
// on CUDA (one dtype) the norm and the scale stay on the device (two launches, no
// synchronisation; the gradients are scaled as AdamW reads them, bit for bit what
// clip_grad_norm then step gives); elsewhere the gradients are clipped at once.
struct GradNorm {
  Tensor norm_scale;      // CUDA f64 [norm, scale], or undefined
  double host_norm = 0;   // the norm, where norm_scale is undefined
  double norm() const;    // reads the device norm (one device-to-host copy) where there is one
};
GradNorm clip_grad_norm_deferred(const std::vector<Tensor>& params, double max_norm);

enum class LrSchedule { Cosine, Constant, ConstantCooldown };
LrSchedule parse_lr_schedule(const std::string& name);  // "cosine", "const", "const-cooldown"

// OpenCLIP's schedules: linear warmup to base_lr over `warmup` steps, then cosine decay to 0 at
// `total` steps; constant; or constant with a final linear cooldown of `cooldown` steps to
// `lr_end` (cooldown_power 1).
double learning_rate(LrSchedule s, double base_lr, int64_t step, int64_t warmup, int64_t total,
                     int64_t cooldown = 0, double lr_end = 0.0);

}  // namespace coca
