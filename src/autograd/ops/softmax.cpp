// softmax and log_softmax over any dim (moved to the last position for the row kernel).
#include "coca/kernels/cpu/softmax.h"
#ifdef COCA_WITH_CUDA
#include "coca/kernels/cuda/softmax.h"
#endif

#include "common.h"

namespace coca {

static Tensor softmax_impl(const Tensor& a, int64_t dim, bool log) {
  const char* op = log ? "log_softmax" : "softmax";
  detail::check_defined(op, a, "input");
  detail::check_cpu(op, {&a});
  detail::check_float(op, a);
  COCA_CHECK(a.dim() >= 1, op, ": needs at least one dimension, got ", a.describe());
  dim = wrap_dim(dim, a, op);
  const bool last = dim == a.dim() - 1;
  Tensor x = last ? a.detach().contiguous() : a.detach().transpose(dim, -1).contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  COCA_DISPATCH_DEVICE(x, softmax_rows(x, y, log));
  Tensor out = last ? y : y.transpose(dim, -1);
  // Save a detached handle: when `out` is `y` itself, capturing `y` would make out's own
  // grad_fn hold out alive (a reference cycle that leaks every graph never backpropagated).
  record(out, op, {a}, [y = y.detach(), dim, last, log](const Tensor& g) {
    Tensor gl = (last ? g : g.transpose(dim, -1)).contiguous();
    Tensor dx = Tensor::empty(y.shape(), y.dtype(), y.device());
    COCA_DISPATCH_DEVICE(y, softmax_rows_backward(y, gl, dx, log));
    return std::vector<Tensor>{last ? dx : dx.transpose(dim, -1)};
  });
  return out;
}

Tensor softmax(const Tensor& a, int64_t dim) { return softmax_impl(a, dim, false); }
Tensor log_softmax(const Tensor& a, int64_t dim) { return softmax_impl(a, dim, true); }

}  // namespace coca
