// attention_from_projections: the fused attention kernel run on strided column windows of the
// projection outputs, with gradients written straight into buffers shaped like those outputs.
#include <cmath>

#include "coca/kernels/cpu/attention.h"
#ifdef COCA_WITH_CUDA
#include "coca/kernels/cuda/attention.h"
#endif
#include "coca/kernels/cpu/strided.h"
#include "common.h"

namespace coca {

namespace {

// Columns [col, col + H*D) of src [B, R, C] as a [B, H, R, D] view.
Tensor head_view(const Tensor& src, int64_t col, int64_t H, int64_t D) {
  const int64_t B = src.size(0), R = src.size(1), C = src.size(2);
  return make_view(src, {B, H, R, D}, {R * C, D, C, 1}, src.impl().offset + col);
}

}  // namespace

Tensor attention_from_projections(const Tensor& q_src_in, int64_t q_col, const Tensor& kv_src_in, int64_t k_col,
                                  int64_t v_col, int64_t width, int64_t heads, const AttentionMask& mask) {
  const char* op = "attention_from_projections";
  detail::check_defined(op, q_src_in, "q_src");
  detail::check_defined(op, kv_src_in, "kv_src");
  detail::check_cpu(op, {&q_src_in, &kv_src_in, &mask.additive, &mask.key_padding});
  detail::check_float(op, q_src_in);
  detail::check_same_dtype(op, q_src_in, kv_src_in);
  COCA_CHECK(q_src_in.dim() == 3 && kv_src_in.dim() == 3 && q_src_in.size(0) == kv_src_in.size(0), op,
             ": sources ", q_src_in.describe(), " and ", kv_src_in.describe(), " must be [B, T, Cq] and [B, S, Ckv]");
  const bool shared = q_src_in.same(kv_src_in);
  Tensor q_src = q_src_in.detach().contiguous();
  Tensor kv_src = shared ? q_src : kv_src_in.detach().contiguous();
  const int64_t B = q_src.size(0), T = q_src.size(1), S = kv_src.size(1);
  const int64_t Cq = q_src.size(2), Ckv = kv_src.size(2);
  COCA_CHECK(heads > 0, op, ": heads must be positive");
  const int64_t W = width;  // the q window must fit in q_src and the k, v windows in kv_src
  COCA_CHECK(W > 0 && W % heads == 0 && q_col >= 0 && q_col + W <= Cq && k_col >= 0 && k_col + W <= Ckv &&
                 v_col >= 0 && v_col + W <= Ckv,
             op, ": column windows q ", q_col, ", k ", k_col, ", v ", v_col, " of width ", W, " do not fit ",
             q_src.describe(), " and ", kv_src.describe(), " for ", heads, " heads");
  const int64_t D = W / heads;
  kernels::AttentionArgs args;
  args.B = B, args.H = heads, args.T = T, args.S = S, args.D = D;
  args.scale = 1.0 / std::sqrt(static_cast<double>(D));
  args.causal = mask.causal;
  if (mask.additive.defined()) {
    detail::check_same_dtype(op, q_src, mask.additive);
    args.additive = mask.additive.detach();
    args.additive_strides = cpu::broadcast_strides(args.additive, {B, heads, T, S}, op);
  }
  if (mask.key_padding.defined()) {
    COCA_CHECK(mask.key_padding.shape() == Shape({B, S}) && mask.key_padding.dtype() == DType::u8, op,
               ": key_padding ", mask.key_padding.describe(), " must be u8 [B, S] = ", shape_str({B, S}));
    args.key_padding = mask.key_padding.contiguous().to(q_src.device());
  }
  Tensor out = Tensor::empty({B, T, W}, q_src.dtype(), q_src.device());  // [B, T, H, D] in memory
  Tensor lse = Tensor::empty({B, heads, T}, q_src.dtype(), q_src.device());
  Tensor q = head_view(q_src, q_col, heads, D), k = head_view(kv_src, k_col, heads, D),
         v = head_view(kv_src, v_col, heads, D);
  Tensor o = head_view(out, 0, heads, D);
  if (out.numel() > 0) COCA_DISPATCH_DEVICE(q, attention_forward(args, q, k, v, o, lse));

  std::vector<Tensor> inputs = shared ? std::vector<Tensor>{q_src_in} : std::vector<Tensor>{q_src_in, kv_src_in};
  record(out, op, inputs, [=](const Tensor& g) {
    Tensor gc = g.contiguous();
    Tensor dq_src = Tensor::empty(q_src.shape(), q_src.dtype(), q_src.device());
    Tensor dkv_src = shared ? dq_src : Tensor::empty(kv_src.shape(), kv_src.dtype(), kv_src.device());
    // Columns no window covers get no gradient: zero them first.
    const bool q_covered = shared ? (Cq == 3 * W && q_col == 0) : (Cq == W);
    const bool kv_covered = shared ? q_covered : (Ckv == 2 * W && std::min(k_col, v_col) == 0);
    if (!q_covered) dq_src.fill_(0);
    if (!shared && !kv_covered) dkv_src.fill_(0);
    Tensor dq = head_view(dq_src, q_col, heads, D), dk = head_view(dkv_src, k_col, heads, D),
           dv = head_view(dkv_src, v_col, heads, D);
    if (gc.numel() > 0) {
      COCA_DISPATCH_DEVICE(q, attention_backward(args, q, k, v, o, lse, head_view(gc, 0, heads, D), dq, dk, dv));
    } else {
      dk.fill_(0);
      dv.fill_(0);
    }
    return shared ? std::vector<Tensor>{dq_src} : std::vector<Tensor>{dq_src, dkv_src};
  });
  return out;
}

}  // namespace coca
