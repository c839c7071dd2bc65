#include "coca/train/accumulate.h"

#include <cmath>

#include "coca/autograd/node.h"
#include "coca/autograd/ops.h"

namespace coca::train {

namespace {

int64_t caption_targets(const Tensor& tokens, int64_t pad_id) {
  int64_t n = 0;
  for (int32_t t : tokens.slice(1, 1, tokens.size(1)).contiguous().to_vector<int32_t>()) n += t != pad_id;
  return n;
}

Tensor maybe_poison(const Tensor& loss, bool poison) { return poison ? mul_scalar(loss, std::nan("")) : loss; }

}  // namespace

StepLosses accumulate_step(const CoCa& model, const std::vector<MicroBatch>& micro, int64_t pad_id,
                           const LossWeights& weights, const LossContext& ctx, const AccumulateHooks& hooks,
                           bool poison) {
  const int k = static_cast<int>(micro.size());
  COCA_CHECK(k >= 1, "accumulate_step: no micro-batch");
  StepLosses out;
  if (k == 1) {  // no kept features: the plain step
    hooks.before_forward(0);
    CocaLosses l = coca_loss(model.forward(micro[0].images, micro[0].tokens, /*trim_padding=*/true), micro[0].tokens,
                             pad_id, weights, ctx);
    hooks.backward(0, maybe_poison(l.total, poison));
    return {l.total.detach(), l.contrastive.detach(), l.caption.detach()};
  }
  const int64_t b = micro[0].tokens.size(0);
  for (const MicroBatch& m : micro)
    COCA_CHECK(m.tokens.size(0) == b && m.images.size(0) == b, "accumulate_step: micro-batches of ", b,
               " and ", m.tokens.size(0), " samples (they must be equal)");

  // The caption loss of each micro-batch is normalised by the whole step's count of targets.
  int64_t local_targets = 0;
  for (const MicroBatch& m : micro) local_targets += caption_targets(m.tokens, pad_id);
  const double step_targets = ctx.sum_over_ranks(static_cast<double>(local_targets));
  LossContext caption_ctx = ctx;
  caption_ctx.sum_over_ranks = [step_targets](double) { return step_targets; };

  // Pass 1: every micro-batch's features, no graph.
  std::vector<Tensor> images(k), texts(k);  // [b, E] each
  {
    NoGradGuard no_grad;
    for (int j = 0; j < k; ++j) {
      hooks.before_forward(j);
      CocaOutput o = model.forward(micro[j].images, micro[j].tokens, /*trim_padding=*/true);
      images[j] = o.image_features.detach();
      texts[j] = o.text_features.detach();
    }
  }

  // Pass 2: micro-batch j live among the kept features.
  Tensor caption_sum, contrastive;
  for (int j = 0; j < k; ++j) {
    hooks.before_forward(j);
    CocaOutput o = model.forward(micro[j].images, micro[j].tokens, /*trim_padding=*/true);
    std::vector<Tensor> img = images, txt = texts;
    img[j] = o.image_features;
    txt[j] = o.text_features;
    // Same value as logit_scale; 1/k of its gradient, since every pass sees the whole loss.
    const Tensor s = o.logit_scale.detach();
    const Tensor scale = add(s, mul_scalar(sub(o.logit_scale, s), 1.0 / k));
    const Tensor con = contrastive_loss(concat(img, 0), concat(txt, 0), scale, ctx);  // this rank's k b rows
    const Tensor cap = caption_loss(o, micro[j].tokens, pad_id, caption_ctx);
    const Tensor loss = add(mul_scalar(con, weights.contrastive), mul_scalar(cap, weights.caption));
    hooks.backward(j, maybe_poison(loss, poison));
    NoGradGuard no_grad;
    contrastive = con.detach();  // the same value in every pass
    caption_sum = j == 0 ? cap.detach() : add(caption_sum, cap.detach());
  }
  NoGradGuard no_grad;
  out.contrastive = contrastive;
  out.caption = caption_sum;
  out.total = add(mul_scalar(contrastive, weights.contrastive), mul_scalar(caption_sum, weights.caption));
  return out;
}

std::array<double, 3> StepLosses::values() const {
  NoGradGuard no_grad;
  const Tensor all = concat({total.reshape({1}), contrastive.reshape({1}), caption.reshape({1})}, 0);
  const std::vector<double> v = all.to(DType::f64).to_vector<double>();
  return {v[0], v[1], v[2]};
}

}  // namespace coca::train
