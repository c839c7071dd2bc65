#include "coca/optim/adamw.h"

#include <cmath>

#include "coca/autograd/node.h"
#ifdef COCA_WITH_CUDA
#include "coca/kernels/cuda/adamw.h"
#include "coca/kernels/cuda/reduce.h"
#include "coca/kernels/cuda/runtime.h"
#endif
#include "coca/kernels/cpu/profile.h"
#include "coca/tensor/dispatch.h"

namespace coca {

bool excluded_from_weight_decay(const std::string& name, const Tensor& t) {
  if (t.dim() <= 1) return true;
  for (const char* key : {"embedding", "logit_scale", "cls_emb", "class_embedding", "positional_embedding",
                          "attn_pool.query", "token_embedding"})
    if (name.find(key) != std::string::npos) return true;
  return false;
}

AdamW::AdamW(std::vector<std::pair<std::string, Tensor>> params, AdamWOptions opts) : opts_(opts) {
  COCA_CHECK(opts.lr >= 0 && opts.eps > 0 && opts.beta1 >= 0 && opts.beta1 < 1 && opts.beta2 >= 0 && opts.beta2 < 1 &&
                 opts.weight_decay >= 0,
             "AdamW: invalid options lr=", opts.lr, " betas=(", opts.beta1, ", ", opts.beta2, ") eps=", opts.eps,
             " wd=", opts.weight_decay);
  for (auto& [name, p] : params) {
    Slot s{name, p, Tensor::zeros(p.shape(), p.dtype(), p.device()), Tensor::zeros(p.shape(), p.dtype(), p.device()),
           !excluded_from_weight_decay(name, p)};
    slots_.push_back(std::move(s));
  }
}

void AdamW::step(double lr, const Tensor& norm_scale) {
  ++step_;
  const double bc1 = 1.0 - std::pow(opts_.beta1, static_cast<double>(step_));
  const double bc2 = 1.0 - std::pow(opts_.beta2, static_cast<double>(step_));
  const double step_size = lr / bc1, bc2_sqrt = std::sqrt(bc2);
#ifdef COCA_WITH_CUDA
  // Every CUDA parameter in one launch per dtype.
  std::vector<cuda::AdamWTensors> on_device[2];  // f32, f64
#endif
  for (Slot& s : slots_) {
    Tensor g = s.param.grad();
    if (!g.defined()) continue;
    COCA_CHECK(g.is_contiguous() && s.param.is_contiguous(), "AdamW: parameter ", s.name, " or its gradient is not contiguous");
#ifdef COCA_WITH_CUDA
    if (s.param.device() == Device::CUDA) {
      COCA_CHECK(g.device() == Device::CUDA && s.m.device() == Device::CUDA, "AdamW: parameter ", s.name,
                 " is on CUDA but its gradient or state is not");
      COCA_CHECK(s.param.dtype() == DType::f32 || s.param.dtype() == DType::f64, "AdamW: parameter ", s.name,
                 " is ", dtype_name(s.param.dtype()), " (float32 or float64 only)");
      on_device[s.param.dtype() == DType::f32 ? 0 : 1].push_back(
          {s.param, s.m, s.v, g, s.decay ? 1.0 - lr * opts_.weight_decay : 1.0});
      continue;
    }
#endif
    COCA_CHECK(!norm_scale.defined(), "AdamW: a device clipping scale was given but ", s.name, " is on the CPU");
    cpu::ProfileScope prof("adamw");
    dispatch_float(s.param.dtype(), "AdamW", [&](auto tag) {
      using T = typename decltype(tag)::type;
      T* p = s.param.data<T>();
      T* m = s.m.data<T>();
      T* v = s.v.data<T>();
      const T* gp = g.data<T>();
      const int64_t n = s.param.numel();
      const T b1 = static_cast<T>(opts_.beta1), b2 = static_cast<T>(opts_.beta2);
      const T decay = static_cast<T>(s.decay ? 1.0 - lr * opts_.weight_decay : 1.0);
      const T eps = static_cast<T>(opts_.eps), ss = static_cast<T>(step_size), b2s = static_cast<T>(bc2_sqrt);
#pragma omp parallel for simd schedule(static) if (n >= 65536)
      for (int64_t i = 0; i < n; ++i) {
        // torch.optim.AdamW: p *= 1 - lr*wd; m, v moments; p -= (lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps)
        p[i] *= decay;
        m[i] = b1 * m[i] + (T(1) - b1) * gp[i];
        v[i] = b2 * v[i] + (T(1) - b2) * gp[i] * gp[i];
        p[i] -= ss * m[i] / (std::sqrt(v[i]) / b2s + eps);
      }
    });
  }
#ifdef COCA_WITH_CUDA
  for (auto& group : on_device)
    cuda::adamw_step_many(group, opts_.beta1, opts_.beta2, opts_.eps, step_size, bc2_sqrt, norm_scale);
#endif
}

void AdamW::zero_grad() {
  cpu::ProfileScope prof("zero_grad");
  for (Slot& s : slots_) s.param.zero_grad();
}

namespace {

// The CUDA gradients of params (contiguous), or none when a gradient is on the CPU or the
// gradients mix dtypes (then everything is summed on the host).
std::vector<Tensor> device_grads(const std::vector<Tensor>& params) {
  std::vector<Tensor> out;
#ifdef COCA_WITH_CUDA
  for (const Tensor& p : params) {
    if (!p.grad().defined()) continue;
    if (p.grad().device() != Device::CUDA || (!out.empty() && p.grad().dtype() != out[0].dtype())) return {};
    out.push_back(p.grad().contiguous());
  }
#endif
  return out;
}

double host_sum_squares(const std::vector<Tensor>& params) {
  double total = 0;
  for (const Tensor& p : params) {
    if (!p.grad().defined()) continue;
    Tensor g = p.grad().to(Device::CPU);
    dispatch_float(g.dtype(), "grad_norm", [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* gp = g.contiguous().template data<T>();
      double s = 0;
      for (int64_t i = 0; i < g.numel(); ++i) s += static_cast<double>(gp[i]) * gp[i];
      total += s;
    });
  }
  return total;
}

double clip_scale(double norm, double max_norm) {
  return max_norm > 0 && norm > max_norm ? max_norm / (norm + 1e-6) : 1.0;
}

}  // namespace

double global_grad_norm(const std::vector<Tensor>& params) {
#ifdef COCA_WITH_CUDA
  if (std::vector<Tensor> dg = device_grads(params); !dg.empty()) {
    double pair[2];
    Tensor ns = cuda::grad_norm_and_scale(dg, 0.0);
    cuda::memcpy(pair, ns.raw_data(), sizeof pair, 1);
    return pair[0];
  }
#endif
  return std::sqrt(host_sum_squares(params));
}

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  const double norm = global_grad_norm(params);
  const double scale = clip_scale(norm, max_norm);
  if (scale != 1.0) {
    for (const Tensor& p : params) {
      Tensor g = p.grad();
      if (!g.defined()) continue;
#ifdef COCA_WITH_CUDA
      if (g.device() == Device::CUDA) {
        cuda::scale_(g, scale);
        continue;
      }
#endif
      dispatch_float(g.dtype(), "clip_grad_norm", [&](auto tag) {
        using T = typename decltype(tag)::type;
        T* gp = g.template data<T>();
        for (int64_t i = 0; i < g.numel(); ++i) gp[i] *= static_cast<T>(scale);
      });
    }
  }
  return norm;
}

GradNorm clip_grad_norm_deferred(const std::vector<Tensor>& params, double max_norm) {
  GradNorm r;
#ifdef COCA_WITH_CUDA
  if (std::vector<Tensor> dg = device_grads(params); !dg.empty()) {
    r.norm_scale = cuda::grad_norm_and_scale(dg, max_norm);
    return r;
  }
#endif
  r.host_norm = clip_grad_norm(params, max_norm);
  return r;
}

double GradNorm::norm() const {
  if (!norm_scale.defined()) return host_norm;
#ifdef COCA_WITH_CUDA
  double pair[2];
  cuda::memcpy(pair, norm_scale.raw_data(), sizeof pair, 1);
  return pair[0];
#else
  return host_norm;
#endif
}

LrSchedule parse_lr_schedule(const std::string& name) {
  if (name == "cosine") return LrSchedule::Cosine;
  if (name == "const") return LrSchedule::Constant;
  if (name == "const-cooldown") return LrSchedule::ConstantCooldown;
  throw Error(str_cat("--lr-scheduler: unknown schedule '", name, "' (cosine, const, const-cooldown)"));
}

double learning_rate(LrSchedule s, double base_lr, int64_t step, int64_t warmup, int64_t total, int64_t cooldown,
                     double lr_end) {
  if (step < warmup) return base_lr * static_cast<double>(step + 1) / static_cast<double>(warmup);
  switch (s) {
    case LrSchedule::Constant: return base_lr;
    case LrSchedule::Cosine: {
      const double e = static_cast<double>(step - warmup), es = static_cast<double>(std::max<int64_t>(total - warmup, 1));
      return 0.5 * (1.0 + std::cos(M_PI * std::min(e / es, 1.0))) * base_lr;
    }
    case LrSchedule::ConstantCooldown: {
      const int64_t start = total - cooldown;
      if (step < start) return base_lr;
      const double frac = static_cast<double>(step - start) / static_cast<double>(std::max<int64_t>(cooldown, 1));
      return lr_end + (base_lr - lr_end) * (1.0 - std::min(frac, 1.0));
    }
  }
  return base_lr;
}

}  // namespace coca
