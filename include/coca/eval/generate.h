#pragma once
// Caption generation with key/value caches. The unimodal text tower is causal at positions
// 0..L-1 (only the CLS row at L sees padding), so its layers and the decoder's self-attention
// layers can keep each position's keys and values: feeding one more token costs one position
// through every projection and MLP plus one attention row over the cached keys. The decoder's
// cross-attention keys and values are computed once per image.
//
// Decoding starts from start-of-text at position 0 and generates at most
// min(max_length, L - 1) tokens (the last position a logit can be read at is L - 1);
// end-of-text ends a caption and is not part of the output, nor is start-of-text, which is
// never generated.
#include <cstdint>
#include <string>
#include <vector>

#include "coca/model/coca.h"

namespace coca::eval {

class CaptionDecoder {
 public:
  explicit CaptionDecoder(const CoCa& model);  // model must be float32
  // image_tokens f32 [I, Q, E]; row_image[r] = the image row r reads. Clears the caches.
  void start(const Tensor& image_tokens, std::vector<int64_t> row_image);
  // Feeds tokens[r] to row r at position position(); returns the next-token logits f32 [R, V].
  Tensor step(const std::vector<int32_t>& tokens);
  // Row i of the new state continues old row parents[i] (rows may be dropped or repeated).
  void reorder(const std::vector<int64_t>& parents);
  int64_t position() const { return pos_; }
  int64_t rows() const { return static_cast<int64_t>(row_image_.size()); }

 private:
  Tensor self_block(const nn::ResidualAttentionBlock& block, const Tensor& x, std::vector<float>& cache) const;
  Tensor cross_block(const nn::ResidualAttentionBlock& block, const Tensor& x, const Tensor& kv) const;

  const CoCa& model_;
  int64_t L_, w_;                           // context length, width (text tower = decoder width)
  int64_t pos_ = 0;
  std::vector<int64_t> row_image_;
  std::vector<std::vector<float>> caches_;  // per self-attention layer: [R, L, 2w] (keys | values)
  std::vector<Tensor> cross_kv_;            // per decoder layer: [I, Q, 2w]
};

// Next-token logits f32 [R, V] after each prefix (all the same length t + 1 <= L) by running
// the whole text tower on the zero-padded prefix and the decoder on positions 0..t: the
// reference the cache must reproduce, and the uncached baseline of the benchmark.
// image_tokens [R, Q, E] (one row per prefix).
Tensor uncached_next_logits(const CoCa& model, const std::vector<std::vector<int32_t>>& prefixes,
                            const Tensor& image_tokens);

enum class DecodeMethod { greedy, beam, sample };
DecodeMethod parse_decode_method(const std::string& name);

struct GenerateOptions {
  DecodeMethod method = DecodeMethod::greedy;
  int max_length = 0;          // generated tokens, end-of-text included; 0 or > L - 1: L - 1
  int sot = -1, eot = -1;      // start/end-of-text ids; -1: vocab_size - 2, vocab_size - 1
  // beam: the hypotheses finished (end-of-text or max_length) are scored by
  // log-probability / length^length_penalty (length = generated tokens, end-of-text
  // included); the search stops once `beams` hypotheses are finished (HF's
  // early_stopping=True), which makes one beam exactly greedy decoding.
  int beams = 3;
  double length_penalty = 1.0;
  // sample: logits / temperature, keep the top_k (0: all), then the smallest set of most
  // probable tokens whose probability reaches top_p; one generator per image, seeded from
  // (seed, image id), so the result does not depend on batching or ranks.
  double temperature = 1.0;
  int top_k = 0;
  double top_p = 1.0;
  uint64_t seed = 0;
};

// Captions (token ids without start/end-of-text) for image_tokens [I, Q, E]; image_ids
// (size I) seed the sampler.
std::vector<std::vector<int32_t>> generate(const CoCa& model, const Tensor& image_tokens, const GenerateOptions& opts,
                                           const std::vector<int64_t>& image_ids);

}  // namespace coca::eval
