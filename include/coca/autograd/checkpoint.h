#pragma once
// Activation checkpointing: run a function of tensors without keeping its intermediate
// activations, and recompute them when backward reaches it. The forward runs under
// NoGradGuard (nothing of it is recorded); one node is recorded instead, holding only the
// inputs. Its backward re-runs `fn` on detached copies of the inputs with grad mode on and
// back-propagates the incoming gradient through that fresh graph: the parameters used inside
// `fn` receive their gradients there (their post-accumulate hooks fire as usual), and the
// node returns the gradients of the inputs. With a deterministic `fn` the gradients equal
// those of the plain forward bit for bit.
#include <functional>
#include <vector>

#include "coca/tensor/random.h"
#include "coca/tensor/tensor.h"

namespace coca {

using CheckpointFn = std::function<Tensor(const std::vector<Tensor>&)>;

// inputs: the tensors `fn` reads that carry gradient from outside (undefined entries are
// passed through as they are). params: the parameters `fn` uses; their grad requirement
// decides whether a node is recorded (an input that needs no gradient does not mean the block
// is frozen). gen: when `fn` draws random numbers from it, its state at the forward is
// replayed for the recompute (and restored afterwards), so the recompute draws the same.
// `fn`, the inputs and `gen` must stay valid until backward has passed the node.
Tensor checkpoint(CheckpointFn fn, const std::vector<Tensor>& inputs, const std::vector<Tensor>& params,
                  Generator* gen = nullptr);

}  // namespace coca
