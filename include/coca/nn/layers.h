#pragma once
// The transformer building blocks of CoCa (spec section 5), with OpenCLIP's parameter names.
// Parameters are created zero-filled; the model's initialiser (model/init.cpp) sets them.
#include "coca/autograd/ops.h"
#include "coca/nn/module.h"

namespace coca::nn {

class Linear : public Module {
 public:
  Linear(int64_t in, int64_t out, bool bias, DType dtype);
  Tensor forward(const Tensor& x) const { return linear(x, weight, bias); }
  Tensor weight;  // [out, in]
  Tensor bias;    // [out] or undefined
};

class LayerNorm : public Module {
 public:
  LayerNorm(int64_t dim, DType dtype);
  Tensor forward(const Tensor& x) const { return layer_norm(x, weight, bias, 1e-5); }
  Tensor weight, bias;  // [dim]
};

class Mlp : public Module {
 public:
  Mlp(int64_t width, int64_t hidden, DType dtype);
  // c_proj(gelu(c_fc(x))); on the CPU c_fc's bias and the GELU are one fused pass (bias_gelu).
  Tensor forward(const Tensor& x) const;
  std::shared_ptr<Linear> c_fc, c_proj;
};

// Multi-head attention in torch.nn.MultiheadAttention's layout: packed in_proj_weight [3d, d]
// when the key/value width equals d, else q_proj_weight [d, d], k_proj_weight [d, kdim] and
// v_proj_weight [d, kdim]; in_proj_bias [3d] always; out_proj.
class MultiheadAttention : public Module {
 public:
  MultiheadAttention(int64_t dim, int64_t heads, int64_t kdim, DType dtype);
  // x [B, T, d]; kv [B, S, kdim] (undefined: self-attention on x). Returns [B, T, d].
  Tensor forward(const Tensor& x, const Tensor& kv, const AttentionMask& mask) const;
  bool packed() const { return packed_; }
  int64_t dim, heads, kdim;
  Tensor in_proj_weight, q_proj_weight, k_proj_weight, v_proj_weight, in_proj_bias;
  std::shared_ptr<Linear> out_proj;

 private:
  bool packed_;
};

// Pre-LN residual block: x += attn(ln_1(x)[, ln_1_kv(kv)]); x += mlp(ln_2(x)).
class ResidualAttentionBlock : public Module {
 public:
  ResidualAttentionBlock(int64_t width, int64_t heads, double mlp_ratio, bool cross, DType dtype);
  Tensor forward(const Tensor& x, const Tensor& kv, const AttentionMask& mask) const;
  bool cross;
  std::shared_ptr<LayerNorm> ln_1, ln_1_kv, ln_2;
  std::shared_ptr<MultiheadAttention> attn;
  std::shared_ptr<Mlp> mlp;
};

}  // namespace coca::nn
