// Reverse-mode engine: a topological sort of the Nodes reachable from the root, then one pass
// in reverse order that hands each Node the sum of the gradients flowing into it.
#include <unordered_map>
#include <unordered_set>

#include "coca/autograd/node.h"
#include "coca/autograd/ops.h"
#include "coca/kernels/cpu/profile.h"

namespace coca {

static thread_local bool g_grad_enabled = true;

bool grad_enabled() { return g_grad_enabled; }
NoGradGuard::NoGradGuard() : previous_(g_grad_enabled) { g_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { g_grad_enabled = previous_; }
EnableGradGuard::EnableGradGuard() : previous_(g_grad_enabled) { g_grad_enabled = true; }
EnableGradGuard::~EnableGradGuard() { g_grad_enabled = previous_; }

bool any_requires_grad(std::initializer_list<const Tensor*> inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor* t : inputs)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}

bool any_requires_grad(const std::vector<Tensor>& inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

static std::shared_ptr<Node> gradient_edge(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return nullptr;
  TensorImpl& impl = t.impl();
  if (impl.grad_fn) return impl.grad_fn;
  if (!impl.grad_accumulator) {
    auto acc = std::make_shared<AccumulateGrad>();
    acc->name = "accumulate_grad";
    acc->leaf = t.impl_ptr();
    impl.grad_accumulator = acc;
  }
  return impl.grad_accumulator;
}

void record(Tensor& out, const char* op, const std::vector<Tensor>& inputs, BackwardFn fn) {
  if (!any_requires_grad(inputs)) return;
  auto node = std::make_shared<FunctionNode>();
  node->name = op;
  node->fn = std::move(fn);
  node->next.reserve(inputs.size());
  for (const Tensor& t : inputs) node->next.push_back(gradient_edge(t));
  out.impl().requires_grad = true;
  out.impl().grad_fn = std::move(node);
}

std::vector<Tensor> FunctionNode::apply(const Tensor& grad_output) {
  COCA_CHECK(!released, "backward through '", name,
             "' a second time: the graph is freed after backward; run the forward again");
  return fn(grad_output);
}

void FunctionNode::release() {
  fn = nullptr;  // drops the tensors the closure saved
  released = true;
  next.clear();
}

std::vector<Tensor> AccumulateGrad::apply(const Tensor& g) {
  cpu::ProfileScope prof("accumulate_grad");
  auto impl = leaf.lock();
  if (!impl) return {};
  Tensor t(impl);
  COCA_CHECK(g.shape() == t.shape(), "accumulate_grad: gradient ", g.describe(), " for leaf ", t.describe());
  // The first gradient of a step can be adopted instead of copied when nothing else can see
  // its buffer: a contiguous result that fills its whole storage, held by the engine alone (one
  // handle on its TensorImpl, one TensorImpl on its storage).
  const TensorImpl& gi = g.impl();
  if (!impl->grad && g.dtype() == t.dtype() && g.device() == t.device() && gi.offset == 0 && g.is_contiguous() &&
      g.impl_ptr().use_count() == 1 && gi.storage.use_count() == 1 &&
      gi.storage->nbytes == static_cast<size_t>(g.numel()) * dtype_size(g.dtype())) {
    auto own = std::make_shared<TensorImpl>();
    own->storage = gi.storage;
    own->shape = gi.shape;
    own->strides = gi.strides;
    own->dtype = gi.dtype;
    impl->grad = std::move(own);
    if (impl->post_accumulate_hook) impl->post_accumulate_hook(*impl);
    return {};
  }
  Tensor gc = g.dtype() == t.dtype() ? g : g.to(t.dtype());
  if (!impl->grad) {
    // Own a contiguous copy: g may alias storage that a later op reuses.
    Tensor copy = Tensor::empty(t.shape(), t.dtype(), t.device());
    copy.copy_(gc);
    impl->grad = copy.impl_ptr();
  } else {
    Tensor acc(impl->grad);
    Tensor sum = add(acc, gc);
    acc.copy_(sum);
  }
  if (impl->post_accumulate_hook) impl->post_accumulate_hook(*impl);
  return {};
}

void run_backward(const Tensor& root, const Tensor& grad_output) {
  COCA_CHECK(root.defined(), "backward: undefined tensor");
  COCA_CHECK(root.requires_grad(), "backward: tensor ", root.describe(),
             " does not require grad (no input of its graph requires grad, or it was made under NoGradGuard)");
  Tensor seed = grad_output;
  if (!seed.defined()) {
    COCA_CHECK(root.numel() == 1, "backward: tensor ", root.describe(),
               " is not a scalar; pass the gradient of the output");
    seed = Tensor::ones(root.shape(), root.dtype(), root.device());
  }
  COCA_CHECK(seed.shape() == root.shape() && seed.dtype() == root.dtype(), "backward: gradient ", seed.describe(),
             " for output ", root.describe(), " (shape and dtype must match)");
  NoGradGuard no_grad;

  std::shared_ptr<Node> start = root.impl().grad_fn ? root.impl().grad_fn : gradient_edge(root);

  // Iterative DFS post-order gives a topological order (inputs after their users when reversed).
  // `order` owns its nodes: releasing a node drops its edges, and a node that only its user's
  // edge kept alive (the grad_fn of a temporary) would otherwise be freed before its turn.
  std::vector<std::shared_ptr<Node>> order;
  std::unordered_set<Node*> visited;
  std::vector<std::pair<std::shared_ptr<Node>, size_t>> stack{{start, 0}};
  visited.insert(start.get());
  while (!stack.empty()) {
    auto& top = stack.back();
    if (top.second < top.first->next.size()) {
      const std::shared_ptr<Node>& child = top.first->next[top.second++];
      if (child && visited.insert(child.get()).second) stack.push_back({child, 0});  // may move `top`
    } else {
      order.push_back(std::move(top.first));
      stack.pop_back();
    }
  }

  std::unordered_map<Node*, Tensor> pending;
  pending[start.get()] = seed;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    Node* node = it->get();
    auto found = pending.find(node);
    if (found == pending.end()) {  // no gradient reached it (e.g. all inputs' grads undefined)
      node->release();
      continue;
    }
    Tensor g = std::move(found->second);
    pending.erase(found);
    std::vector<Tensor> grads = node->apply(g);
    COCA_CHECK(grads.empty() || grads.size() == node->next.size(), "backward of '", node->name, "' returned ",
               grads.size(), " gradients for ", node->next.size(), " inputs");
    for (size_t i = 0; i < grads.size(); ++i) {
      Node* child = node->next[i].get();
      if (!child || !grads[i].defined()) continue;
      auto slot = pending.find(child);
      if (slot == pending.end()) {
        pending.emplace(child, std::move(grads[i]));
      } else {
        slot->second = add(slot->second, grads[i]);
      }
    }
    node->release();
  }
}

}  // namespace coca
