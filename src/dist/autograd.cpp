#include "coca/dist/autograd.h"

#include <chrono>

#include "coca/autograd/node.h"

namespace coca::dist {
namespace {
double g_gather_seconds = 0;  // in all_gather_with_grad's gather and reduce-scatter, this process

struct GatherTimer {
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  ~GatherTimer() { g_gather_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); }
};
}  // namespace

double all_gather_with_grad_seconds() { return g_gather_seconds; }

Tensor all_gather_with_grad(const std::shared_ptr<Communicator>& comm, const Tensor& x) {
  COCA_CHECK(comm != nullptr, "all_gather_with_grad: no communicator");
  COCA_CHECK(x.dim() >= 1, "all_gather_with_grad: tensor ", x.describe(), " needs a leading dimension");
  if (comm->size() == 1) return x;
  Tensor in;
  {
    NoGradGuard no_grad;
    in = x.contiguous();
  }
  Shape out_shape = x.shape();
  out_shape[0] *= comm->size();
  Tensor out = Tensor::empty(out_shape, x.dtype(), x.device());  // [W n, ...]
  {
    GatherTimer timer;
    comm->all_gather(in, out);
  }
  record(out, "all_gather_with_grad", {x}, [comm, in_shape = x.shape()](const Tensor& g) -> std::vector<Tensor> {
    // d/dx_r of sum_q L_q(gathered) = sum over ranks q of g_q[rows of r]: a reduce-scatter.
    Tensor gc = g.contiguous();
    Tensor local = Tensor::empty(in_shape, g.dtype(), g.device());  // [n, ...]
    GatherTimer timer;
    comm->reduce_scatter(gc, local, ReduceOp::Sum);
    return {local};
  });
  return out;
}

LossContext make_loss_context(const std::shared_ptr<Communicator>& tensors, std::shared_ptr<MpiCommunicator> scalars) {
  COCA_CHECK(tensors != nullptr, "make_loss_context: no communicator");
  if (!scalars) scalars = std::dynamic_pointer_cast<MpiCommunicator>(tensors);
  COCA_CHECK(scalars != nullptr, "make_loss_context: a ", tensors->backend(),
             " communicator needs the MPI communicator for host scalars");
  COCA_CHECK(scalars->size() == tensors->size() && scalars->rank() == tensors->rank(),
             "make_loss_context: the ", tensors->backend(), " communicator (rank ", tensors->rank(), " of ",
             tensors->size(), ") and the MPI one (rank ", scalars->rank(), " of ", scalars->size(), ") differ");
  LossContext ctx;
  ctx.rank = tensors->rank();
  ctx.world = tensors->size();
  // Every rank must gather the same number of rows. That is checked over the ranks (a host
  // collective) the first time and whenever this rank's count changes, not on every gather of
  // every step: a rank whose count changes alone then stops in the collective's timeout.
  auto checked_rows = std::make_shared<int64_t>(-2);
  ctx.gather = [tensors, scalars, checked_rows](const Tensor& t) {
    const int64_t n = t.dim() >= 1 ? t.size(0) : -1;
    if (tensors->size() > 1 && n != *checked_rows) {
      auto rows = scalars->all_gather_value(n);
      for (size_t r = 0; r < rows.size(); ++r)
        COCA_CHECK(rows[r] == rows[0], "global-batch loss: rank ", r, " holds ", rows[r], " rows but rank 0 holds ",
                   rows[0], "; every rank needs the same per-rank batch (labels are offset by rank * n)");
      *checked_rows = n;
    }
    return all_gather_with_grad(tensors, t);
  };
  ctx.sum_over_ranks = [scalars](double v) { return scalars->size() == 1 ? v : scalars->sum(v); };
  return ctx;
}

void broadcast_parameters(Communicator& comm, const std::vector<Tensor>& params) {
  if (comm.size() == 1) return;
  for (const Tensor& p : params) {
    COCA_CHECK(p.is_contiguous(), "broadcast_parameters: parameter ", p.impl().name, " ", p.describe(),
               " is not contiguous");
    comm.broadcast(p.detach(), 0);
  }
}

void broadcast_parameters(Communicator& comm, const nn::Module& module) {
  broadcast_parameters(comm, module.parameters());
}

}  // namespace coca::dist
