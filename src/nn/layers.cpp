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

Tensor Mlp::forward(const Tensor& x) const {
  const bool fusable = x.device() == Device::CPU && (x.dtype() == DType::f32 || x.dtype() == DType::f64);
  if (fusable && c_fc->bias.defined())
    return c_proj->forward(bias_gelu(linear(x, c_fc->weight), c_fc->bias));
  return c_proj->forward(gelu(c_fc->forward(x)));
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
  Tensor o;  // [B, T, d]
  if (!kv_in.defined() && packed_) {
    // Self-attention: one [B, T, 3d] projection; attention reads q, k, v as column windows.
    Tensor qkv = linear(x, in_proj_weight, in_proj_bias);
    o = attention_from_projections(qkv, 0, qkv, dim, 2 * dim, dim, heads, mask);
  } else {
    const Tensor& kv = kv_in.defined() ? kv_in : x;
    COCA_CHECK(kv.dim() == 3 && kv.size(0) == x.size(0) && kv.size(2) == kdim, "attention: key/value input ",
               kv.describe(), " must be [", x.size(0), ", S, ", kdim, "]");
    Tensor wq = packed_ ? in_proj_weight.slice(0, 0, dim) : q_proj_weight;
    Tensor q = linear(x, wq, in_proj_bias.slice(0, 0, dim));  // [B, T, d]
    Tensor wkv = packed_ ? in_proj_weight.slice(0, dim, 3 * dim) : concat({k_proj_weight, v_proj_weight}, 0);
    Tensor kvp = linear(kv, wkv, in_proj_bias.slice(0, dim, 3 * dim));  // [B, S, 2d]
    o = attention_from_projections(q, 0, kvp, 0, dim, dim, heads, mask);
  }
  return out_proj->forward(o);
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
