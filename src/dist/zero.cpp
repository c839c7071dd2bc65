#include "coca/dist/zero.h"

#include "coca/model/weights.h"

#include <cmath>
#include <map>

#include "device_copy.h"

namespace coca::dist {

Zero1AdamW::Zero1AdamW(GradientBucketer& grads, AdamWOptions opts) : grads_(grads) {
  COCA_CHECK(grads.options().shard, "Zero1AdamW: the GradientBucketer must be built with BucketOptions::shard = true");
  Communicator& comm = grads.comm();
  COCA_CHECK(comm.device() == Device::CPU, "Zero1AdamW: the ", comm.backend(),
             " communicator's tensors are on the GPU; ZeRO-1 needs the CUDA AdamW (not built yet)");
  const int64_t rank = comm.rank();
  std::vector<std::pair<std::string, Tensor>> named;
  std::vector<bool> decay;
  auto& buckets = grads.buckets();
  for (size_t bi = 0; bi < buckets.size(); ++bi) {
    auto& b = buckets[bi];
    const int64_t S = b.shard.numel(), lo = rank * S, hi = lo + S;  // this rank's slice [lo, hi)
    param_shards_.push_back(Tensor::zeros({S}, b.dtype));
    for (auto& e : b.entries) {
      const int64_t a = std::max(lo, e.offset), z = std::min(hi, e.offset + e.param.numel());
      if (a >= z) continue;
      segments_.push_back(Segment{bi, e.name, e.param, a - e.offset, a - lo, z - a});
      segment_params_.push_back(make_view(param_shards_[bi], {z - a}, {1}, a - lo));
      segment_grads_.push_back(make_view(b.shard, {z - a}, {1}, a - lo));
      named.emplace_back(str_cat(e.name, "[", a - e.offset, ":", z - e.offset, "]"), segment_params_.back());
      decay.push_back(!excluded_from_weight_decay(e.name, e.param));
    }
  }
  adamw_ = std::make_unique<AdamW>(named, opts);
  // The rule looks at the whole parameter's name and rank, not at the 1-D segment.
  for (size_t i = 0; i < decay.size(); ++i) adamw_->slots()[i].decay = decay[i];
}

int64_t Zero1AdamW::state_numel() const {
  int64_t n = 0;
  for (const auto& s : adamw_->slots()) n += s.m.numel();
  return n;
}

double Zero1AdamW::clip_grad_norm(double max_norm) {
  double local = 0;
  for (auto& b : grads_.buckets()) {
    Tensor s = b.shard;
    const int64_t n = s.numel();
    if (s.dtype() == DType::f64) {
      const double* p = s.data<double>();
      for (int64_t i = 0; i < n; ++i) local += p[i] * p[i];
    } else {
      const float* p = s.data<float>();
      for (int64_t i = 0; i < n; ++i) local += static_cast<double>(p[i]) * p[i];
    }
  }
  Tensor total = Tensor::full({1}, local, DType::f64);
  grads_.comm().all_reduce(total, ReduceOp::Sum);
  const double norm = std::sqrt(total.data<double>()[0]);
  if (max_norm > 0 && norm > max_norm) {
    const double scale = max_norm / (norm + 1e-6);  // as coca::clip_grad_norm
    for (auto& b : grads_.buckets()) {
      Tensor s = b.shard;
      if (s.dtype() == DType::f64) {
        double* p = s.data<double>();
        for (int64_t i = 0; i < s.numel(); ++i) p[i] *= scale;
      } else {
        float* p = s.data<float>();
        for (int64_t i = 0; i < s.numel(); ++i) p[i] *= static_cast<float>(scale);
      }
    }
  }
  return norm;
}

NamedTensors Zero1AdamW::state_dict(const std::vector<std::pair<std::string, Tensor>>& named) {
  auto& buckets = grads_.buckets();
  const auto& slots = adamw_->slots();
  std::map<std::string, Tensor> full;  // <name>.exp_avg / .exp_avg_sq -> whole tensor
  for (size_t bi = 0; bi < buckets.size(); ++bi) {
    auto& b = buckets[bi];
    const int64_t S = b.shard.numel();
    for (int which = 0; which < 2; ++which) {
      Tensor mine = Tensor::zeros({S}, b.dtype, b.flat.device());
      for (size_t i = 0; i < segments_.size(); ++i) {
        const Segment& sg = segments_[i];
        if (sg.bucket != bi) continue;
        mine.slice(0, sg.shard_offset, sg.shard_offset + sg.numel).copy_(which == 0 ? slots[i].m : slots[i].v);
      }
      Tensor all = Tensor::empty({b.padded}, b.dtype, b.flat.device());
      grads_.comm().all_gather(mine, all);
      for (auto& e : b.entries)
        full[e.name + (which == 0 ? ".exp_avg" : ".exp_avg_sq")] =
            all.slice(0, e.offset, e.offset + e.param.numel()).reshape(e.param.shape());
    }
  }
  NamedTensors out;
  for (auto& [name, p] : named) {
    for (const char* suffix : {".exp_avg", ".exp_avg_sq"}) {
      auto it = full.find(name + suffix);
      COCA_CHECK(it != full.end(), "Zero1AdamW::state_dict: parameter ", name, " is not in the gradient buckets");
      out.emplace_back(it->first, it->second);
    }
  }
  out.emplace_back("step", Tensor::full({}, static_cast<double>(adamw_->steps()), DType::f64));
  return out;
}

void Zero1AdamW::load_state_dict(const NamedTensors& state, const std::string& source) {
  std::map<std::string, Tensor> byname(state.begin(), state.end());
  std::vector<std::string> missing, wrong;
  auto& slots = adamw_->slots();
  for (size_t i = 0; i < segments_.size(); ++i) {
    const Segment& sg = segments_[i];
    const std::string& pname = sg.name;
    for (auto [suffix, dst] : {std::pair<const char*, Tensor*>{".exp_avg", &slots[i].m}, {".exp_avg_sq", &slots[i].v}}) {
      auto it = byname.find(pname + suffix);
      if (it == byname.end()) {
        missing.push_back(pname + suffix);
      } else if (it->second.shape() != sg.param.shape()) {
        wrong.push_back(pname + suffix);
      } else {
        Tensor flat = it->second.contiguous().reshape({sg.param.numel()});
        dst->copy_(flat.slice(0, sg.param_offset, sg.param_offset + sg.numel));
      }
    }
  }
  auto step = byname.find("step");
  if (step == byname.end()) missing.push_back("step");
  else adamw_->set_steps(static_cast<int64_t>(step->second.item()));
  if (!missing.empty() || !wrong.empty())
    throw Error(str_cat("optimizer state ", source, " does not match the model: ", describe_mismatch(missing, {}, wrong)));
}

void Zero1AdamW::step(double lr) {
  auto& buckets = grads_.buckets();
  for (auto& b : buckets)
    COCA_CHECK(b.dtype == DType::f32 || b.dtype == DType::f64, "Zero1AdamW: dtype ", dtype_name(b.dtype),
               " is not supported (f32, f64)");
  for (size_t i = 0; i < segments_.size(); ++i) {
    const Segment& s = segments_[i];
    Tensor whole = make_view(s.param, {s.param.numel()}, {1}, s.param.impl().offset);
    segment_params_[i].copy_(whole.slice(0, s.param_offset, s.param_offset + s.numel));
    segment_params_[i].set_grad(segment_grads_[i]);
  }
  adamw_->step(lr);
  for (size_t bi = 0; bi < buckets.size(); ++bi) {
    auto& b = buckets[bi];
    grads_.comm().all_gather(param_shards_[bi], b.flat);  // the gradient buffer is free now
    for (auto& e : b.entries) detail::copy_out(e.param, b.flat, e.offset);
  }
}

}  // namespace coca::dist
