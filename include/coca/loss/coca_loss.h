#pragma once
// CoCa losses (spec sections 6 and 7), written for W ranks from the start: with the default
// context (one rank) they are the plain single-process losses.
#include <functional>

#include "coca/model/coca.h"

namespace coca {

// What the losses need from the process group. The distributed layer fills it in; the
// default is a single process.
struct LossContext {
  int rank = 0;
  int world = 1;
  // all_gather_with_grad along dim 0 (rank order); identity for one rank.
  std::function<Tensor(const Tensor&)> gather = [](const Tensor& t) { return t; };
  // Sum of a scalar over ranks; identity for one rank.
  std::function<double(double)> sum_over_ranks = [](double v) { return v; };
};

struct LossWeights {
  double contrastive = 1.0;
  double caption = 2.0;
};

struct CocaLosses {
  Tensor total, contrastive, caption;  // scalars
};

// Symmetric InfoNCE over the global batch: this rank's n rows of the n x N logits in each
// direction, labels offset by rank*n, mean over the n rows. Averaging the gradients over
// ranks then gives exactly the single-process gradient.
Tensor contrastive_loss(const Tensor& image_features, const Tensor& text_features, const Tensor& logit_scale,
                        const LossContext& ctx = {});

// Cross-entropy of caption_logits [B, T-1, V] (T <= L; T < L from a trimmed forward, whose
// dropped positions must all have padding targets) against tokens[:, 1:T], ignoring pad_id,
// normalised by the global count of non-pad targets (times W, so that averaging the gradients
// over ranks gives the single-process gradient).
Tensor caption_loss(const Tensor& caption_logits, const Tensor& tokens, int64_t pad_id, const LossContext& ctx = {});

// The same from a model output: caption_logits [B, L-1, V], or packed [N, V] with
// caption_targets [N] (a trimmed forward), which must be exactly tokens[:, 1:]'s non-pad ones.
// A model without a decoder (out.captions false, CLIP) has no caption loss: a constant 0.
Tensor caption_loss(const CocaOutput& out, const Tensor& tokens, int64_t pad_id, const LossContext& ctx = {});

CocaLosses coca_loss(const CocaOutput& out, const Tensor& tokens, int64_t pad_id, const LossWeights& w = {},
                     const LossContext& ctx = {});

}  // namespace coca
