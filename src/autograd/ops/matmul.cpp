// matmul (with broadcast batch dims and transposed views) and linear (x W^T + b).
#include "coca/kernels/cpu/matmul.h"
#ifdef COCA_WITH_CUDA
#include "coca/kernels/cuda/matmul.h"
#endif

#include "common.h"
#include "coca/kernels/cpu/strided.h"

namespace coca {

namespace {

// Element offsets of every batch entry of t's leading dims, broadcast to `batch`.
std::vector<int64_t> batch_offsets(const Tensor& t, const Shape& batch) {
  Shape lead(t.shape().begin(), t.shape().end() - 2);
  Shape lead_strides(t.strides().begin(), t.strides().end() - 2);
  Tensor geometry = make_view(t, lead, lead_strides, 0);
  const Shape st = cpu::broadcast_strides(geometry, batch, "matmul");
  const int64_t n = shape_numel(batch);
  std::vector<int64_t> offs(n);
  for (int64_t i = 0; i < n; ++i) {
    int64_t rem = i, off = 0;
    for (int64_t d = static_cast<int64_t>(batch.size()) - 1; d >= 0; --d) {
      off += (rem % batch[d]) * st[d];
      rem /= batch[d];
    }
    offs[i] = off;
  }
  return offs;
}

Tensor as_operand(const Tensor& t, kernels::GemmOperand& op) {
  if (cpu::gemm_operand(t, op)) return t;
  Tensor c = t.detach().contiguous();
  cpu::gemm_operand(c, op);
  return c;
}

// Forward only: a [..., M, K] @ b [..., K, N] with broadcast batch dims.
Tensor matmul_forward(const Tensor& a_in, const Tensor& b_in) {
  const int64_t M = a_in.size(-2), K = a_in.size(-1), N = b_in.size(-1);
  Shape ba(a_in.shape().begin(), a_in.shape().end() - 2), bb(b_in.shape().begin(), b_in.shape().end() - 2);
  Shape batch = cpu::broadcast_shapes(ba, bb, "matmul");
  Shape out_shape = batch;
  out_shape.push_back(M);
  out_shape.push_back(N);
  Tensor out = Tensor::empty(out_shape, a_in.dtype(), a_in.device());
  if (out.numel() == 0) return out;
  if (K == 0) return out.fill_(0);
  kernels::GemmOperand opa, opb;
  Tensor a = as_operand(a_in, opa);
  Tensor b = as_operand(b_in, opb);
  const auto a_off = batch_offsets(a, batch);
  const auto b_off = batch_offsets(b, batch);
  std::vector<int64_t> c_off(a_off.size());
  for (size_t i = 0; i < c_off.size(); ++i) c_off[i] = static_cast<int64_t>(i) * M * N;
  COCA_DISPATCH_DEVICE(a, gemm_batched(a, opa, a_off, b, opb, b_off, out, N, c_off, M, N, K, 1.0, 0.0));
  return out;
}

void check_matmul(const char* op, const Tensor& a, const Tensor& b, int64_t ka, int64_t kb) {
  detail::check_defined(op, a, "first operand");
  detail::check_defined(op, b, "second operand");
  detail::check_cpu(op, {&a, &b});
  detail::check_float(op, a);
  detail::check_same_dtype(op, a, b);
  COCA_CHECK(a.dim() >= 2 && b.dim() >= 2, op, ": operands ", a.describe(), " and ", b.describe(),
             " need at least 2 dimensions");
  COCA_CHECK(ka == kb, op, ": inner dimensions differ: ", a.describe(), " and ", b.describe());
  // Leading (batch) dims broadcast like elementwise shapes.
  for (int64_t i = 3; i <= std::min(a.dim(), b.dim()); ++i) {
    const int64_t da = a.size(-i), db = b.size(-i);
    COCA_CHECK(da == db || da == 1 || db == 1, op, ": batch dimensions of ", a.describe(), " and ", b.describe(),
               " cannot be broadcast together");
  }
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  check_matmul("matmul", a, b, a.defined() && a.dim() >= 1 ? a.size(-1) : 0,
               b.defined() && b.dim() >= 2 ? b.size(-2) : -1);
  // [..., M, K] @ [K, N]: fold the leading dims into M so that BLAS sees one large product.
  if (a.dim() > 2 && b.dim() == 2) {
    Shape out_shape(a.shape().begin(), a.shape().end() - 1);
    out_shape.push_back(b.size(-1));
    return matmul(a.reshape({-1, a.size(-1)}), b).reshape(out_shape);
  }
  Tensor out = matmul_forward(a, b);
  const bool ga = a.requires_grad(), gb = b.requires_grad();
  record(out, "matmul", {a, b}, [sa = a.shape(), sb = b.shape(), a_saved = gb ? a.detach() : Tensor(),
                                 b_saved = ga ? b.detach() : Tensor()](const Tensor& g) {
    Tensor da, db;
    if (b_saved.defined()) da = sum_to_shape(matmul_forward(g, b_saved.transpose(-2, -1)), sa);
    if (a_saved.defined()) db = sum_to_shape(matmul_forward(a_saved.transpose(-2, -1), g), sb);
    return std::vector<Tensor>{da, db};
  });
  return out;
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_matmul("linear", x, weight, x.defined() && x.dim() >= 1 ? x.size(-1) : 0,
               weight.defined() && weight.dim() == 2 ? weight.size(1) : -1);
  COCA_CHECK(weight.dim() == 2, "linear: weight ", weight.describe(), " must be [out, in]");
  const int64_t in = weight.size(1), out_features = weight.size(0);
  if (bias.defined()) {
    detail::check_same_dtype("linear", x, bias);
    COCA_CHECK(bias.dim() == 1 && bias.size(0) == out_features, "linear: bias ", bias.describe(),
               " does not match weight ", weight.describe());
  }
  Tensor x2 = x.dim() == 2 ? x : x.detach().reshape({-1, in});  // [R, in]
  const int64_t R = x2.size(0);
  Tensor y = Tensor::empty({R, out_features}, x.dtype(), x.device());
  if (R > 0 && in > 0) {
    kernels::GemmOperand opx, opw;
    Tensor xa = as_operand(x2, opx);
    Tensor wt = as_operand(weight.detach().t(), opw);
    bool bias_fused = false;  // the GPU adds the bias in the matmul's epilogue where it can
#ifdef COCA_WITH_CUDA
    if (bias.defined() && xa.device() == Device::CUDA)
      bias_fused = cuda::gemm_bias(xa, opx, wt, opw, bias.detach().contiguous(), y, out_features, R, out_features, in);
#endif
    double beta = 0.0;
    if (bias.defined() && !bias_fused) {
      y.copy_(bias.detach().unsqueeze(0).expand({R, out_features}));
      beta = 1.0;
    }
    if (!bias_fused)
      COCA_DISPATCH_DEVICE(xa, gemm_batched(xa, opx, {0}, wt, opw, {0}, y, out_features, {0}, R, out_features, in,
                                            1.0, beta));
  } else if (bias.defined()) {
    y.copy_(bias.detach().unsqueeze(0).expand({R, out_features}));
  } else {
    y.fill_(0);
  }
  Shape out_shape(x.shape().begin(), x.shape().end() - 1);
  out_shape.push_back(out_features);
  Tensor out = y.reshape(out_shape);
  const bool gx = x.requires_grad(), gw = weight.requires_grad();
  record(out, "linear", {x, weight, bias},
         [x_shape = x.shape(), in, x_saved = gw ? x2.detach() : Tensor(), w_saved = gx ? weight.detach() : Tensor(),
          has_bias = bias.defined()](const Tensor& g) {
           Tensor g2 = g.reshape({-1, g.size(-1)});  // [R, out]
           Tensor dx, dw, db;
           if (w_saved.defined()) dx = matmul_forward(g2, w_saved).reshape(x_shape);
           if (x_saved.defined()) dw = matmul_forward(g2.t(), x_saved);
           if (has_bias) db = sum(g2, {0});
           return std::vector<Tensor>{dx, dw, db};
         });
  return out;
}

}  // namespace coca
