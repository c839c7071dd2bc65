#pragma once
// The autograd tape. Every differentiable op whose inputs require grad records a Node whose
// backward closure sits next to the op's forward (src/autograd/ops/*.cpp) and captures only the
// tensors that backward needs. Edges point to the Nodes of the inputs (their grad_fn, or the
// AccumulateGrad of a leaf), never to the input tensors themselves.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "coca/tensor/tensor.h"

namespace coca {

struct Node {
  std::string name;                          // the op, for error messages
  std::vector<std::shared_ptr<Node>> next;   // one per input; null where no grad flows
  virtual ~Node() = default;
  // Gradients with respect to each input (undefined Tensor where not needed).
  virtual std::vector<Tensor> apply(const Tensor& grad_output) = 0;
  // Drops saved tensors and edges once backward has passed (the graph is freed).
  virtual void release() { next.clear(); }
};

using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output)>;

struct FunctionNode : Node {
  BackwardFn fn;
  bool released = false;
  std::vector<Tensor> apply(const Tensor& grad_output) override;
  void release() override;
};

struct AccumulateGrad : Node {
  std::weak_ptr<TensorImpl> leaf;
  std::vector<Tensor> apply(const Tensor& grad_output) override;
};

// Grad mode: ops record nodes only while enabled (thread-local).
bool grad_enabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};
// Turns grad mode on for its scope (the recompute inside a checkpoint's backward).
class EnableGradGuard {
 public:
  EnableGradGuard();
  ~EnableGradGuard();
  EnableGradGuard(const EnableGradGuard&) = delete;
  EnableGradGuard& operator=(const EnableGradGuard&) = delete;

 private:
  bool previous_;
};

// True when grad mode is on and any input requires grad.
bool any_requires_grad(std::initializer_list<const Tensor*> inputs);
bool any_requires_grad(const std::vector<Tensor>& inputs);

// Records `fn` as the backward of `out` with respect to `inputs`. Does nothing when no input
// requires grad or grad mode is off. `fn` must return one entry per input.
void record(Tensor& out, const char* op, const std::vector<Tensor>& inputs, BackwardFn fn);

// Runs reverse-mode differentiation from `root` (a one-element tensor unless `grad_output`
// is given), accumulating into the .grad of every leaf that requires grad.
void run_backward(const Tensor& root, const Tensor& grad_output);

}  // namespace coca
