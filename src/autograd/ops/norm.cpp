// layer_norm (fused forward and backward) and l2_normalize.
#include "coca/kernels/cpu/norm.h"
#ifdef COCA_WITH_CUDA
#include "coca/kernels/cuda/norm.h"
#endif

#include "common.h"

namespace coca {

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  detail::check_defined("layer_norm", x, "input");
  detail::check_cpu("layer_norm", {&x, &weight, &bias});
  detail::check_float("layer_norm", x);
  COCA_CHECK(x.dim() >= 1, "layer_norm: input ", x.describe(), " has no dimensions");
  const int64_t C = x.size(-1);
  for (const Tensor* p : {&weight, &bias}) {
    if (!p->defined()) continue;
    detail::check_same_dtype("layer_norm", x, *p);
    COCA_CHECK(p->dim() == 1 && p->size(0) == C, "layer_norm: parameter ", p->describe(),
               " does not match the last dimension of input ", x.describe());
  }
  Tensor xc = x.detach().contiguous();
  const int64_t R = x.numel() / std::max<int64_t>(C, 1);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor mean = Tensor::empty({R}, x.dtype(), x.device()), rstd = Tensor::empty({R}, x.dtype(), x.device());
  Tensor wc = weight.defined() ? weight.detach().contiguous() : Tensor();
  Tensor bc = bias.defined() ? bias.detach().contiguous() : Tensor();
  COCA_DISPATCH_DEVICE(xc, layer_norm_forward(xc, wc, bc, eps, y, mean, rstd));
  record(y, "layer_norm", {x, weight, bias},
         [xc, wc, mean, rstd, want_w = weight.defined() && weight.requires_grad(),
          want_b = bias.defined() && bias.requires_grad()](const Tensor& g) {
           Tensor gc = g.contiguous();
           Tensor dx = Tensor::empty(xc.shape(), xc.dtype(), xc.device());
           const int64_t C = xc.size(-1);
           Tensor dw = want_w ? Tensor::empty({C}, xc.dtype(), xc.device()) : Tensor();
           Tensor db = want_b ? Tensor::empty({C}, xc.dtype(), xc.device()) : Tensor();
           COCA_DISPATCH_DEVICE(xc, layer_norm_backward(xc, wc, mean, rstd, gc, dx, dw, db));
           return std::vector<Tensor>{dx, dw, db};
         });
  return y;
}

Tensor l2_normalize(const Tensor& x, int64_t dim, double eps) {
  detail::check_defined("l2_normalize", x, "input");
  detail::check_cpu("l2_normalize", {&x});
  detail::check_float("l2_normalize", x);
  dim = wrap_dim(dim, x, "l2_normalize");
  const bool last = dim == x.dim() - 1;
  Tensor xc = last ? x.detach().contiguous() : x.detach().transpose(dim, -1).contiguous();
  const int64_t C = xc.size(-1);
  Tensor y = Tensor::empty(xc.shape(), xc.dtype(), xc.device());
  Tensor norm = Tensor::empty({xc.numel() / std::max<int64_t>(C, 1)}, xc.dtype(), xc.device());
  COCA_DISPATCH_DEVICE(xc, l2_normalize_forward(xc, eps, y, norm));
  Tensor out = last ? y : y.transpose(dim, -1);
  // Detached: `out` may be `y` itself, and a captured `y` would keep its own graph alive.
  record(out, "l2_normalize", {x}, [y = y.detach(), norm, eps, dim, last](const Tensor& g) {
    Tensor gl = (last ? g : g.transpose(dim, -1)).contiguous();
    Tensor dx = Tensor::empty(y.shape(), y.dtype(), y.device());
    COCA_DISPATCH_DEVICE(y, l2_normalize_backward(y, norm, gl, eps, dx));
    return std::vector<Tensor>{last ? dx : dx.transpose(dim, -1)};
  });
  return out;
}

}  // namespace coca
