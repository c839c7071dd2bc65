#pragma once
// Modules own named parameters and child modules; names compose with dots exactly as
// OpenCLIP's state_dict() spells them ("visual.transformer.resblocks.0.attn.in_proj_weight").
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "coca/tensor/tensor.h"

namespace coca::nn {

class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Every parameter under this module, depth-first in registration order.
  std::vector<std::pair<std::string, Tensor>> named_parameters(const std::string& prefix = "") const;
  std::vector<Tensor> parameters() const;
  int64_t parameter_count() const;
  void zero_grad();
  // Moves every parameter to `device` in place (the Tensor handles held elsewhere follow);
  // gradients are dropped.
  void to(Device device);

 protected:
  Tensor& register_parameter(const std::string& name, Tensor value);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    children_.emplace_back(name, module);
    return module;
  }

 private:
  std::vector<std::pair<std::string, Tensor>> params_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

}  // namespace coca::nn

namespace coca::nn {

// Children named "0", "1", ... (OpenCLIP's nn.ModuleList / nn.Sequential naming).
template <typename M>
class ModuleList : public Module {
 public:
  void push_back(std::shared_ptr<M> m) {
    register_module(std::to_string(items_.size()), m);
    items_.push_back(std::move(m));
  }
  size_t size() const { return items_.size(); }
  const std::shared_ptr<M>& operator[](size_t i) const { return items_[i]; }
  auto begin() const { return items_.begin(); }
  auto end() const { return items_.end(); }

 private:
  std::vector<std::shared_ptr<M>> items_;
};

// A named level in the hierarchy with no parameters of its own ("transformer" in
// "visual.transformer.resblocks.0...").
class Container : public Module {
 public:
  template <typename M>
  std::shared_ptr<M> add(const std::string& name, std::shared_ptr<M> m) {
    return register_module(name, std::move(m));
  }
  Tensor param(const std::string& name, Tensor value) { return register_parameter(name, std::move(value)); }
};

}  // namespace coca::nn
