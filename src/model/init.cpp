// Parameter initialisation, spec section 8. Draws happen in named_parameters() order from one
// seeded Generator, so a seed gives the same model on every machine.
#include <cmath>

#include "coca/model/coca.h"

namespace coca {

namespace {

void normal_(Tensor& t, Generator& gen, double std) {
  Tensor r = Tensor::randn(t.shape(), gen, t.dtype(), 0.0, std);
  t.copy_(r);
}

void uniform_(Tensor& t, Generator& gen, double bound) {
  Tensor r = Tensor::rand(t.shape(), gen, t.dtype(), -bound, bound);
  t.copy_(r);
}

// torch.nn.Linear's default: weight and bias uniform(+-1/sqrt(fan_in)).
void default_linear_(nn::Linear& l, Generator& gen) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(l.weight.size(1)));
  uniform_(l.weight, gen, bound);
  if (l.bias.defined()) uniform_(l.bias, gen, bound);
}

void xavier_uniform_(Tensor& w, Generator& gen) {
  const double fan_out = static_cast<double>(w.size(0)), fan_in = static_cast<double>(w.size(1));
  uniform_(w, gen, std::sqrt(6.0 / (fan_in + fan_out)));
}

// nn.MultiheadAttention's reset: xavier on the input projections, zero biases; out_proj keeps
// the default Linear weight with a zero bias.
void attention_xavier_(nn::MultiheadAttention& a, Generator& gen) {
  if (a.packed()) {
    xavier_uniform_(a.in_proj_weight, gen);
  } else {
    xavier_uniform_(a.q_proj_weight, gen);
    xavier_uniform_(a.k_proj_weight, gen);
    xavier_uniform_(a.v_proj_weight, gen);
  }
  a.in_proj_bias.fill_(0);
  default_linear_(*a.out_proj, gen);
  a.out_proj->bias.fill_(0);
}

// The text-tower scheme (OpenCLIP's TextTransformer.init_parameters), also used by the decoder.
void text_block_(Block& b, Generator& gen, int64_t width, int64_t layers) {
  const double w = static_cast<double>(width);
  const double attn_std = std::pow(w, -0.5);
  const double proj_std = attn_std * std::pow(2.0 * layers, -0.5);
  const double fc_std = std::pow(2.0 * w, -0.5);
  auto& a = *b.attn;
  if (a.packed()) normal_(a.in_proj_weight, gen, attn_std);
  a.in_proj_bias.fill_(0);
  normal_(a.out_proj->weight, gen, proj_std);
  a.out_proj->bias.fill_(0);
  const double fc_bias = 1.0 / std::sqrt(w);
  normal_(b.mlp->c_fc->weight, gen, fc_std);
  uniform_(b.mlp->c_fc->bias, gen, fc_bias);
  normal_(b.mlp->c_proj->weight, gen, proj_std);
  uniform_(b.mlp->c_proj->bias, gen, 1.0 / std::sqrt(static_cast<double>(b.mlp->c_proj->weight.size(1))));
}

void reset_layer_norms(nn::Module& m) {
  for (auto& [name, t] : m.named_parameters()) {
    const bool ln = name.find("ln_") != std::string::npos;
    if (ln && name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0) t.fill_(1);
    if (ln && name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0) t.fill_(0);
  }
}

}  // namespace

void CoCa::initialize(uint64_t seed) {
  NoGradGuard no_grad;
  Generator gen(seed);
  logit_scale.fill_(cfg_.init_logit_scale);

  // Text tower.
  {
    auto& t = *text;
    const int64_t w = t.cfg.width;
    normal_(t.token_embedding_weight, gen, 0.02);
    normal_(t.positional_embedding, gen, 0.01);
    if (t.cls_emb.defined()) normal_(t.cls_emb, gen, 0.01);
    for (const auto& b : *t.transformer->resblocks) text_block_(*b, gen, w, t.cfg.layers);
    normal_(t.text_projection, gen, std::pow(static_cast<double>(w), -0.5));
  }
  // Image tower.
  {
    auto& v = *visual;
    const double scale = std::pow(static_cast<double>(v.cfg.width), -0.5);
    normal_(v.class_embedding, gen, scale);
    normal_(v.positional_embedding, gen, scale);
    normal_(v.proj, gen, scale);
    uniform_(v.conv1_weight, gen, 1.0 / std::sqrt(static_cast<double>(3 * v.cfg.patch_size * v.cfg.patch_size)));
    for (const auto& b : *v.transformer->resblocks) {
      attention_xavier_(*b->attn, gen);
      default_linear_(*b->mlp->c_fc, gen);
      default_linear_(*b->mlp->c_proj, gen);
    }
    if (v.attn_pool) {
      normal_(v.attn_pool->query, gen, 1.0);
      attention_xavier_(*v.attn_pool->attn, gen);
    }
  }
  // Decoder: the text scheme; cross-attention blocks with packed weights likewise.
  if (text_decoder) {
    auto& d = *text_decoder;
    for (size_t i = 0; i < d.resblocks->size(); ++i) {
      text_block_(*(*d.resblocks)[i], gen, d.cfg.width, d.cfg.layers);
      text_block_(*(*d.cross_attn)[i], gen, d.cfg.width, d.cfg.layers);
    }
    normal_(d.text_projection, gen, std::pow(static_cast<double>(d.cfg.width), -0.5));
  }
  reset_layer_norms(*this);
}

}  // namespace coca
