#include "coca/loss/coca_loss.h"

namespace coca {

Tensor contrastive_loss(const Tensor& image_features, const Tensor& text_features, const Tensor& logit_scale,
                        const LossContext& ctx) {
  COCA_CHECK(image_features.dim() == 2 && image_features.shape() == text_features.shape(),
             "contrastive_loss: image features ", image_features.describe(), " and text features ",
             text_features.describe(), " must both be [n, E]");
  const int64_t n = image_features.size(0);
  Tensor all_images = ctx.gather(image_features);  // [N, E]
  Tensor all_texts = ctx.gather(text_features);    // [N, E]
  Tensor scale = exp(logit_scale);
  Tensor logits_i2t = mul(matmul(image_features, all_texts.t()), scale);  // [n, N]
  Tensor logits_t2i = mul(matmul(text_features, all_images.t()), scale);  // [n, N]
  std::vector<int32_t> labels(n);
  for (int64_t i = 0; i < n; ++i) labels[i] = static_cast<int32_t>(ctx.rank * n + i);
  Tensor target = Tensor::from_vector(labels, {n}).to(image_features.device());
  return mul_scalar(add(cross_entropy(logits_i2t, target), cross_entropy(logits_t2i, target)), 0.5);
}

Tensor caption_loss(const Tensor& caption_logits, const Tensor& tokens, int64_t pad_id, const LossContext& ctx) {
  COCA_CHECK(caption_logits.dim() == 3 && tokens.dim() == 2 && caption_logits.size(0) == tokens.size(0) &&
                 caption_logits.size(1) >= 1 && caption_logits.size(1) <= tokens.size(1) - 1,
             "caption_loss: logits ", caption_logits.describe(), " do not match tokens ", tokens.describe(),
             " (expected [B, T-1, V], T <= L)");
  const int64_t B = tokens.size(0), L = tokens.size(1), T = caption_logits.size(1) + 1, V = caption_logits.size(2);
  // Logits for positions [0, T-1) predict tokens [1, T); a trimmed forward drops only
  // positions whose targets are all padding (CoCa::forward), which is checked here.
  const std::vector<int32_t> tok = tokens.to_vector<int32_t>();
  int64_t local = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 1; j < L; ++j) {
      const bool counted = tok[b * L + j] != pad_id;
      COCA_CHECK(!counted || j < T, "caption_loss: logits ", caption_logits.describe(), " cover ", T,
                 " token positions but row ", b, " has a token at position ", j);
      local += counted;
    }
  Tensor targets = (T < L ? tokens.slice(1, 1, T) : tokens.slice(1, 1, L)).contiguous().reshape({-1}).to(caption_logits.device());
  const double global = ctx.sum_over_ranks(static_cast<double>(local));
  // No gradient flows through the count. Scaled by 1/W so the rank-average of gradients is exact.
  const double normalizer = global > 0 ? global / ctx.world : -1.0;
  return cross_entropy(caption_logits.reshape({-1, V}), targets, pad_id, normalizer);
}

Tensor caption_loss(const CocaOutput& out, const Tensor& tokens, int64_t pad_id, const LossContext& ctx) {
  if (!out.captions) return Tensor::zeros({}, out.image_features.dtype(), out.image_features.device());  // CLIP
  if (out.caption_logits.defined() && out.caption_logits.dim() == 3)
    return caption_loss(out.caption_logits, tokens, pad_id, ctx);
  // Packed: one logits row per target that is a token (CoCa::forward with trim_padding).
  COCA_CHECK(tokens.dim() == 2, "caption_loss: tokens ", tokens.describe(), " must be [B, L]");
  int64_t local = 0;
  for (int32_t t : tokens.slice(1, 1, tokens.size(1)).contiguous().to_vector<int32_t>()) local += t != pad_id;
  const int64_t n = out.caption_targets.defined() ? out.caption_targets.size(0) : 0;
  COCA_CHECK(n == local && (n == 0 || (out.caption_logits.dim() == 2 && out.caption_logits.size(0) == n)),
             "caption_loss: packed logits ", out.caption_logits.defined() ? out.caption_logits.describe() : "(none)",
             " for ", n, " targets, but tokens ", tokens.describe(), " hold ", local);
  const double global = ctx.sum_over_ranks(static_cast<double>(local));
  if (n == 0) return mul_scalar(sum(out.image_features), 0.0);  // no token to predict on this rank
  return cross_entropy(out.caption_logits, out.caption_targets, pad_id, global / ctx.world);
}

CocaLosses coca_loss(const CocaOutput& out, const Tensor& tokens, int64_t pad_id, const LossWeights& w,
                     const LossContext& ctx) {
  CocaLosses l;
  l.contrastive = contrastive_loss(out.image_features, out.text_features, out.logit_scale, ctx);
  l.caption = caption_loss(out, tokens, pad_id, ctx);
  l.total = add(mul_scalar(l.contrastive, w.contrastive), mul_scalar(l.caption, w.caption));
  return l;
}

}  // namespace coca
