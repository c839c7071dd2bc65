#include "coca/autograd/checkpoint.h"

#include "coca/autograd/node.h"

namespace coca {

Tensor checkpoint(CheckpointFn fn, const std::vector<Tensor>& inputs, const std::vector<Tensor>& params,
                  Generator* gen) {
  std::vector<Tensor> edges = inputs;
  edges.insert(edges.end(), params.begin(), params.end());
  if (!any_requires_grad(edges)) return fn(inputs);
  const auto rng_state = gen ? gen->state() : std::array<uint64_t, 5>{};
  Tensor out;
  {
    NoGradGuard no_grad;
    out = fn(inputs);
  }
  const size_t n_inputs = inputs.size(), n_edges = edges.size();
  record(out, "checkpoint", edges,
         [fn = std::move(fn), inputs, gen, rng_state, n_inputs, n_edges](const Tensor& g) {
           std::vector<Tensor> leaves;
           leaves.reserve(n_inputs);
           for (const Tensor& t : inputs) {
             if (!t.defined()) {
               leaves.emplace_back();
               continue;
             }
             Tensor leaf = t.detach();
             leaf.set_requires_grad(t.requires_grad());
             leaves.push_back(std::move(leaf));
           }
           Tensor again;
           {
             EnableGradGuard grad_on;
             std::array<uint64_t, 5> after{};
             if (gen) {
               after = gen->state();
               gen->set_state(rng_state);
             }
             again = fn(leaves);
             if (gen) gen->set_state(after);
           }
           COCA_CHECK(again.shape() == g.shape(), "checkpoint: the recomputed output ", again.describe(),
                      " differs in shape from the gradient ", g.describe(), " (the function is not deterministic)");
           if (again.requires_grad()) run_backward(again, g);
           std::vector<Tensor> grads(n_edges);  // the parameters got theirs in run_backward
           for (size_t i = 0; i < n_inputs; ++i)
             if (leaves[i].defined() && leaves[i].requires_grad()) grads[i] = leaves[i].grad();
           return grads;
         });
  return out;
}

}  // namespace coca
