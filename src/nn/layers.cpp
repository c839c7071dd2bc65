#include "coca/nn/layers.h"

namespace coca::nn {

Linear::Linear(int64_t in, int64_t out, bool with_bias, DType dtype) {
  weight = register_parameter("weight", Tensor::zeros({out, in}, dtype));
  if (with_bias) bias = register_parameter("bias", Tensor::zeros({out}, dtype));
}

LayerNorm::LayerNorm(int64_t dim, DType dtype) {
  weight = register_parameter("weight", Tensor::ones({dim}, dtype));
  bias = register_parameter("bias", Tensor::zeros({dim}, dtype));
}

Mlp::Mlp(int64_t width, int64_t hidden, DType dtype) {
  c_fc = register_module("c_fc", std::make_shared<Linear>(width, hidden, true, dtype));
  c_proj = register_module("c_proj", std::make_shared<Linear>(hidden, width, true, dtype));
}

MultiheadAttention::MultiheadAttention(int64_t d, int64_t h, int64_t kd, DType dtype)
    : dim(d), heads(h), kdim(kd), packed_(kd == d) {
  COCA_CHECK(h > 0 && d % h == 0, "attention: width ", d, " is not divisible by ", h, " heads");
  if (packed_) {
    in_proj_weight = register_parameter("in_proj_weight", Tensor::zeros({3 * d, d}, dtype));
  } else {
    q_proj_weight = register_parameter("q_proj_weight", Tensor::zeros({d, d}, dtype));
    k_proj_weight = register_parameter("k_proj_weight", Tensor::zeros({d, kd}, dtype));
    v_proj_weight = register_parameter("v_proj_weight", Tensor::zeros({d, kd}, dtype));
  }
  in_proj_bias = register_parameter("in_proj_bias", Tensor::zeros({3 * d}, dtype));
  out_proj = register_module("out_proj", std::make_shared<Linear>(d, d, true, dtype));
}

Tensor MultiheadAttention::forward(const Tensor& x, const Tensor& kv_in, const AttentionMask& mask) const {
  COCA_CHECK(x.dim() == 3 && x.size(2) == dim, "attention: query input ", x.describe(), " must be [B, T, ", dim, "]");
  const int64_t B = x.size(0), T = x.size(1), hd = dim / heads;
  Tensor q, k, v;  // each [B, H, rows, hd], views into the projections
  if (!kv_in.defined() && packed_) {
    // Self-attention: one [B, T, 3d] projection, viewed as q, k, v without copies.
    Tensor qkv = linear(x, in_proj_weight, in_proj_bias).reshape({B, T, 3, heads, hd});
    q = qkv.select(2, 0).permute({0, 2, 1, 3});
    k = qkv.select(2, 1).permute({0, 2, 1, 3});
    v = qkv.select(2, 2).permute({0, 2, 1, 3});
  } else {
    const Tensor& kv = kv_in.defined() ? kv_in : x;
    COCA_CHECK(kv.dim() == 3 && kv.size(0) == B && kv.size(2) == kdim, "attention: key/value input ", kv.describe(),
               " must be [", B, ", S, ", kdim, "]");
    const int64_t S = kv.size(1);
    Tensor wq = packed_ ? in_proj_weight.slice(0, 0, dim) : q_proj_weight;
    Tensor bq = in_proj_bias.slice(0, 0, dim);
    q = linear(x, wq, bq).reshape({B, T, heads, hd}).permute({0, 2, 1, 3});
    if (packed_) {
      Tensor kvp = linear(kv, in_proj_weight.slice(0, dim, 3 * dim), in_proj_bias.slice(0, dim, 3 * dim))
                       .reshape({B, S, 2, heads, hd});
      k = kvp.select(2, 0).permute({0, 2, 1, 3});
      v = kvp.select(2, 1).permute({0, 2, 1, 3});
    } else {
      k = linear(kv, k_proj_weight, in_proj_bias.slice(0, dim, 2 * dim)).reshape({B, S, heads, hd}).permute({0, 2, 1, 3});
      v = linear(kv, v_proj_weight, in_proj_bias.slice(0, 2 * dim, 3 * dim))
              .reshape({B, S, heads, hd})
              .permute({0, 2, 1, 3});
    }
  }
  Tensor o = scaled_dot_product_attention(q, k, v, mask);  // [B, H, T, hd], stored as [B, T, H, hd]
  return out_proj->forward(o.transpose(1, 2).reshape({B, T, dim}));
}

ResidualAttentionBlock::ResidualAttentionBlock(int64_t width, int64_t heads, double mlp_ratio, bool is_cross,
                                               DType dtype)
    : cross(is_cross) {
  ln_1 = register_module("ln_1", std::make_shared<LayerNorm>(width, dtype));
  attn = register_module("attn", std::make_shared<MultiheadAttention>(width, heads, width, dtype));
  if (cross) ln_1_kv = register_module("ln_1_kv", std::make_shared<LayerNorm>(width, dtype));
  ln_2 = register_module("ln_2", std::make_shared<LayerNorm>(width, dtype));
  mlp = register_module("mlp", std::make_shared<Mlp>(width, static_cast<int64_t>(width * mlp_ratio), dtype));
}

Tensor ResidualAttentionBlock::forward(const Tensor& x, const Tensor& kv, const AttentionMask& mask) const {
  Tensor h = cross ? add(x, attn->forward(ln_1->forward(x), ln_1_kv->forward(kv), mask))
                   : add(x, attn->forward(ln_1->forward(x), Tensor(), mask));
  return add(h, mlp->forward(ln_2->forward(h)));
}

}  // namespace coca::nn
