#include "coca/model/flops.h"

namespace coca {

namespace {

// One pre-LN block over `tokens` query positions with self-attention over `keys` positions.
double block_macs(double tokens, double keys, double width, double mlp_ratio) {
  return tokens * (4 * width * width + 2 * mlp_ratio * width * width) + 2 * tokens * keys * width;
}

}  // namespace

double forward_flops_per_sample(const CocaConfig& c) {
  const auto& v = c.vision;
  const double n_img = static_cast<double>(v.grid() * v.grid() + 1), w = v.width, e = c.embed_dim;
  const double q = v.attn_pooler_queries;
  double macs = 0;
  macs += (n_img - 1) * 3.0 * v.patch_size * v.patch_size * w;  // patch embedding
  macs += v.layers * block_macs(n_img, n_img, w, v.mlp_ratio);  // vision trunk
  if (v.attentional_pool) {
    macs += q * e * e + 2 * n_img * w * e + 2 * q * n_img * e + q * e * e;  // pooler q, kv, attention, out
    macs += e * e;                                                          // proj
  } else {
    macs += w * e;  // proj of the class token
  }
  const auto& t = c.text;
  const double L = static_cast<double>(t.context_length), tw = t.width;
  const double n_text = L + (t.embed_cls ? 1 : 0);
  macs += t.layers * block_macs(n_text, n_text, tw, t.mlp_ratio);
  macs += tw * e;  // text projection
  if (c.clip) return 2.0 * macs;
  const auto& m = c.multimodal;
  const double T = L - 1, mw = m.width, img_tokens = v.attentional_pool ? q - 1 : n_img - 1;
  for (int64_t i = 0; i < m.layers; ++i) {
    macs += block_macs(T, T, mw, m.mlp_ratio);
    // cross-attention block: q and out projections on T, k and v on the image tokens
    macs += T * 2 * mw * mw + img_tokens * 2 * mw * mw + 2 * T * img_tokens * mw + T * 2 * m.mlp_ratio * mw * mw;
  }
  macs += T * mw * m.vocab_size;
  return 2.0 * macs;
}

}  // namespace coca
