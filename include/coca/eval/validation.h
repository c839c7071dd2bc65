#pragma once
// Validation on a captioned shard set (coca-train --val-data), reported as OpenCLIP's
// evaluate() reports it: the validation loss and image<->text retrieval over the whole set.
//   contrastive: the symmetric InfoNCE of the whole set at once: logits = exp(logit_scale) *
//     image_features @ text_features^T over all N rows (row i's image and caption are a pair),
//     mean over the N rows of each direction, the two directions averaged. Unlike a training
//     step's loss (the global batch) this does not depend on the batch size or the ranks.
//   caption: the caption cross-entropy of each batch (mean over its non-pad targets, as in
//     training), averaged over batches weighted by their sample counts; the batches are each
//     rank's batches of `batch_size`.
//   loss: weights.contrastive * contrastive + weights.caption * caption.
//   retrieval: as coca-eval retrieval (see retrieval.h): rows sharing a key are captions of
//     one image.
// Ranks split the rows (EvalReader's contiguous parts); features are all-gathered, so every
// rank ends with the same result.
#include <cstdint>
#include <string>

#include "coca/eval/retrieval.h"
#include "coca/loss/coca_loss.h"

namespace coca::eval {

struct ValidationOptions {
  std::string data;          // captioned shard set
  std::string tokenizer;     // only needed when the shards' tokens do not fit the model
  int batch_size = 64;
  int64_t max_samples = 0;   // the set's first max_samples rows (0: all)
  LossWeights weights;
  int rank = 0, world = 1;
};

struct ValidationResult {
  double loss = 0, contrastive = 0, caption = 0;
  RetrievalResult retrieval;
  int64_t samples = 0;
};

ValidationResult validate(const CoCa& model, const ValidationOptions& opts, const Reducer& reduce);

// The whole-set contrastive loss above for features [N, E] (every rank holds all of them);
// each rank sums its slice of the rows, blocked so memory stays O(block * N).
double whole_set_contrastive_loss(const Tensor& image, const Tensor& text, double scale, int rank, int world,
                                  const Reducer& reduce);

}  // namespace coca::eval
