#pragma once
// What the model and the losses need from the process group: the differentiable all-gather,
// the LossContext of spec section 7, and the start-of-training parameter broadcast.
#include <memory>

#include "coca/dist/mpi.h"
#include "coca/loss/coca_loss.h"
#include "coca/nn/module.h"

namespace coca::dist {

// x [n, ...] on every rank (same shape everywhere) -> [W n, ...] in rank order. Backward sums
// the incoming gradient over ranks and keeps this rank's slice (a reduce-scatter).
Tensor all_gather_with_grad(const std::shared_ptr<Communicator>& comm, const Tensor& x);
// Seconds this process has spent in all_gather_with_grad's collectives (the gather forward and
// the reduce-scatter backward), in all: where a step's embedding exchange goes.
double all_gather_with_grad_seconds();

// rank, world, gather = all_gather_with_grad over `tensors`, sum_over_ranks over `scalars`
// (host doubles; defaults to `tensors` when that is an MpiCommunicator). The gather also
// checks that every rank holds the same number of rows (the labels assume rank * n offsets).
LossContext make_loss_context(const std::shared_ptr<Communicator>& tensors,
                              std::shared_ptr<MpiCommunicator> scalars = nullptr);

// Every parameter <- rank 0's value. Call once before training.
void broadcast_parameters(Communicator& comm, const nn::Module& module);
void broadcast_parameters(Communicator& comm, const std::vector<Tensor>& params);

}  // namespace coca::dist
