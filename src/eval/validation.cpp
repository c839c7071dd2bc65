// Validation loss and retrieval on a captioned set (see the header). Shapes: N rows, I images,
// E embed dim, L context length.
#include "coca/eval/validation.h"

#include <algorithm>
#include <cmath>

#include "coca/data/loader.h"
#include "coca/data/shard_index.h"
#include "coca/data/tokenizer.h"
#include "coca/eval/common.h"

namespace coca::eval {

double whole_set_contrastive_loss(const Tensor& image, const Tensor& text, double scale, int rank, int world,
                                  const Reducer& reduce) {
  COCA_CHECK(image.dim() == 2 && image.shape() == text.shape(), "validation: image features ", image.describe(),
             " and text features ", text.describe(), " must both be [N, E]");
  const int64_t N = image.size(0), block = 256;
  const int64_t begin = N * rank / world, end = N * (rank + 1) / world;
  std::vector<double> sum = {0.0};
  for (const auto& [queries, candidates] : {std::pair{&image, &text}, std::pair{&text, &image}}) {
    const Tensor ct = candidates->t();
    for (int64_t q0 = begin; q0 < end; q0 += block) {
      const int64_t q1 = std::min(end, q0 + block);
      const std::vector<float> s = matmul(queries->slice(0, q0, q1), ct).contiguous().to_vector<float>();
      for (int64_t q = q0; q < q1; ++q) {
        const float* row = s.data() + (q - q0) * N;
        double top = -INFINITY;
        for (int64_t c = 0; c < N; ++c) top = std::max(top, scale * row[c]);
        double z = 0;
        for (int64_t c = 0; c < N; ++c) z += std::exp(scale * row[c] - top);
        sum[0] += top + std::log(z) - scale * row[q];  // -log softmax at the pair
      }
    }
  }
  reduce.sum(sum);
  return sum[0] / (2.0 * static_cast<double>(N));
}

ValidationResult validate(const CoCa& model, const ValidationOptions& o, const Reducer& reduce) {
  NoGradGuard no_grad;
  const CaptionedSet set = load_captioned_set(o.data, o.max_samples);
  COCA_CHECK(set.rows() > 0, "--val-data ", o.data, " holds no samples");
  EvalOptions eo = reader_options(model, o.data, o.batch_size, o.rank, o.world);
  eo.max_samples = set.rows();
  EvalReader reader(eo);
  COCA_CHECK(!reader.index().has_labels(), "--val-data ", o.data,
             " is a classification set; zero-shot evaluation is --zeroshot-data");
  const CocaConfig& cfg = model.config();
  const int L = static_cast<int>(cfg.text.context_length);
  const int64_t E = cfg.embed_dim;
  const auto tok = caption_tokenizer(model, reader.index(), o.tokenizer, o.data, "--val-data", "--val-data " + o.data);
  std::vector<float> my_image, my_text;  // this rank's rows in order
  std::vector<double> sums = {0.0, 0.0};  // caption loss * batch samples, samples
  Batch b;
  while (reader.next(b)) {
    const Tensor t = caption_tokens(b, set, tok.get(), L).to(model.device());
    const CocaOutput out = model.forward(b.images.to(model.device()), t, /*trim_padding=*/true);
    const double n = static_cast<double>(b.indices.size());
    sums[0] += caption_loss(out, t, cfg.text.pad_id).item() * n;
    sums[1] += n;
    auto fi = out.image_features.contiguous().to_vector<float>();
    auto ft = out.text_features.contiguous().to_vector<float>();
    my_image.insert(my_image.end(), fi.begin(), fi.end());
    my_text.insert(my_text.end(), ft.begin(), ft.end());
  }
  reduce.sum(sums);
  const int64_t N = set.rows();
  std::vector<float> all_image = reduce.concat_f32(my_image), all_text = reduce.concat_f32(my_text);
  COCA_CHECK(static_cast<int64_t>(all_image.size()) == N * E && static_cast<int64_t>(all_text.size()) == N * E &&
                 static_cast<int64_t>(sums[1]) == N,
             "--val-data ", o.data, ": the ranks read ", static_cast<int64_t>(sums[1]), " samples, expected ", N);
  const Tensor image = Tensor::from_vector(all_image, {N, E}), text = Tensor::from_vector(all_text, {N, E});

  ValidationResult r;
  r.samples = N;
  r.caption = sums[0] / sums[1];
  r.contrastive = whole_set_contrastive_loss(image, text, std::exp(model.logit_scale.item()), o.rank, o.world, reduce);
  r.loss = o.weights.contrastive * r.contrastive + o.weights.caption * r.caption;
  // Retrieval scores each image once: the features of its first row.
  std::vector<float> per_image;
  per_image.reserve(static_cast<size_t>(set.images() * E));
  for (int64_t row : set.image_first_row)
    per_image.insert(per_image.end(), all_image.begin() + row * E, all_image.begin() + (row + 1) * E);
  r.retrieval = rank_features(Tensor::from_vector(per_image, {set.images(), E}), text, set, o.rank, o.world, reduce);
  return r;
}

}  // namespace coca::eval
