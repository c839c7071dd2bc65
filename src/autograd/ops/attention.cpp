// scaled_dot_product_attention: fused forward and backward (kernels/cpu/attention.cpp).
#include "coca/kernels/cpu/attention.h"
#ifdef COCA_WITH_CUDA
#include "coca/kernels/cuda/attention.h"
#endif

#include <cmath>

#include "common.h"
#include "coca/kernels/cpu/strided.h"

namespace coca {

namespace {

// A view usable by the kernel as BLAS operands: a unit-stride last dim and a row stride of at
// least D (BLAS rejects a smaller leading dimension). Copies only when the rows really overlap
// or the last dim is strided; a single row just gets a harmless row stride.
Tensor kernel_view(const Tensor& t) {
  Tensor d = t.detach();
  const int64_t rows = d.size(2), D = d.size(3);
  const bool unit_last = d.stride(3) == 1 || D <= 1;
  if (!unit_last || (rows > 1 && d.stride(2) < D)) return d.contiguous();
  Shape st = d.strides();
  st[3] = 1;
  if (rows <= 1) st[2] = std::max<int64_t>(D, 1);
  return make_view(d, d.shape(), st, d.impl().offset);
}

// [B, H, R, D] tensor stored as [B, R, H, D] (the layout the output projection wants).
Tensor empty_bhrd(int64_t B, int64_t H, int64_t R, int64_t D, DType dt, Device dev) {
  return Tensor::empty({B, R, H, D}, dt, dev).permute({0, 2, 1, 3});
}

}  // namespace

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionMask& mask,
                                    double scale) {
  const char* op = "scaled_dot_product_attention";
  detail::check_defined(op, q, "q");
  detail::check_defined(op, k, "k");
  detail::check_defined(op, v, "v");
  detail::check_cpu(op, {&q, &k, &v, &mask.additive, &mask.key_padding});
  detail::check_float(op, q);
  detail::check_same_dtype(op, q, k);
  detail::check_same_dtype(op, q, v);
  COCA_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, op, ": q, k, v must be [B, H, T, D]; got ",
             q.describe(), ", ", k.describe(), ", ", v.describe());
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3), S = k.size(2);
  COCA_CHECK(k.size(0) == B && k.size(1) == H && k.size(3) == D && v.size(0) == B && v.size(1) == H &&
                 v.size(2) == S && v.size(3) == D,
             op, ": shapes do not agree: q ", q.describe(), ", k ", k.describe(), ", v ", v.describe());
  kernels::AttentionArgs args;
  args.B = B, args.H = H, args.T = T, args.S = S, args.D = D;
  args.scale = scale > 0 ? scale : 1.0 / std::sqrt(static_cast<double>(D));
  args.causal = mask.causal;
  if (mask.additive.defined()) {
    detail::check_same_dtype(op, q, mask.additive);
    // [T, S] is shared by every batch and head; [B, T, S] is per batch, so it gets a head dim
    // (aligned from the right it would be read as [H, T, S]); [B, H, T, S] is taken as is.
    const Tensor& m = mask.additive;
    COCA_CHECK(m.dim() >= 2 && m.dim() <= 4, op, ": additive mask ", m.describe(),
               " must be [T, S], [B, T, S] or [B, H, T, S] with T = ", T, ", S = ", S);
    args.additive = m.dim() == 3 ? m.detach().unsqueeze(1) : m.detach();
    const Shape full{B, H, T, S};
    for (int64_t d = 0; d < args.additive.dim(); ++d) {
      const int64_t have = args.additive.size(d), want = full[d + 4 - args.additive.dim()];
      COCA_CHECK(have == want || have == 1, op, ": additive mask ", m.describe(), " does not broadcast to [B, H, T, S] = ",
                 shape_str(full));
    }
    args.additive_strides = cpu::broadcast_strides(args.additive, full, op);
  }
  if (mask.key_padding.defined()) {
    COCA_CHECK(mask.key_padding.shape() == Shape({B, S}), op, ": key_padding ", mask.key_padding.describe(),
               " must be [B, S] = ", shape_str({B, S}));
    args.key_padding = mask.key_padding.to(DType::u8).contiguous();
    if (mask.key_padding.dtype() != DType::u8) {
      // to(u8) truncates; rebuild as a 0/1 mask from the original values.
      Tensor kp = Tensor::empty({B, S}, DType::u8);
      auto vals = mask.key_padding.to_double_vector();
      for (size_t i = 0; i < vals.size(); ++i) kp.data<uint8_t>()[i] = vals[i] != 0.0;
      args.key_padding = kp;
    }
    args.key_padding = args.key_padding.to(q.device());
  }
  Tensor qk = kernel_view(q), kk = kernel_view(k), vk = kernel_view(v);
  Tensor out = empty_bhrd(B, H, T, D, q.dtype(), q.device());
  Tensor lse = Tensor::empty({B, H, T}, q.dtype(), q.device());
  if (out.numel() > 0) COCA_DISPATCH_DEVICE(q, attention_forward(args, qk, kk, vk, out, lse));  // S == 0: zeros
  const bool want = any_requires_grad({&q, &k, &v});
  record(out, op, {q, k, v}, [args, qk, kk, vk, o = want ? out.detach() : Tensor(), lse](const Tensor& g) {
    Tensor gk = kernel_view(g);
    Tensor dq = empty_bhrd(args.B, args.H, args.T, args.D, qk.dtype(), qk.device());
    Tensor dk = empty_bhrd(args.B, args.H, args.S, args.D, qk.dtype(), qk.device());
    Tensor dv = empty_bhrd(args.B, args.H, args.S, args.D, qk.dtype(), qk.device());
    if (o.numel() > 0 && args.S > 0) {
      COCA_DISPATCH_DEVICE(qk, attention_backward(args, qk, kk, vk, o, lse, gk, dq, dk, dv));
    } else {  // no queries or no keys: nothing depends on the inputs
      dq.fill_(0);
      dk.fill_(0);
      dv.fill_(0);
    }
    return std::vector<Tensor>{dq, dk, dv};
  });
  return out;
}

}  // namespace coca
