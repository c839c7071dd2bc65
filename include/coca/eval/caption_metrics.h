#pragma once
// Caption metrics as the COCO caption evaluation (pycocoevalcap) defines them:
//   BLEU-1..4: corpus-level, clipped n-gram precision against the per-n-gram maximum count
//   over a candidate's references, brevity penalty from the reference length closest to the
//   candidate's (ties: the shorter), pycocoevalcap's smoothing constants (tiny 1e-15,
//   small 1e-9).
//   CIDEr-D: n = 1..4, tf-idf vectors with document frequency over the references of the
//   whole evaluated set (idf = log(images) - log(max(1, df))), candidate weights clipped by the
//   reference's, Gaussian length penalty exp(-delta^2 / (2 sigma^2)) with sigma 6, mean over
//   n, mean over references, times 10. As in pycocoevalcap, the "length" in delta is the
//   number of bigrams of each caption (one less than its words when it has any).
// Tokenisation (caption_words): lower-case, every ASCII punctuation character becomes a
// space, split on whitespace. This approximates pycocoevalcap's PTBTokenizer, which also
// drops punctuation tokens but splits clitics ("don't" -> "do n't"; here "don t"), so scores
// can differ slightly from the official ones on captions with apostrophes or hyphens.
#include <string>
#include <string_view>
#include <vector>

namespace coca::eval {

std::vector<std::string> caption_words(std::string_view caption);

struct BleuScore {
  double bleu[4] = {0, 0, 0, 0};  // BLEU-1..4
  double test_length = 0, ref_length = 0;
};

// candidates[i] and references[i] (at least one each) are already tokenised.
using Words = std::vector<std::string>;
BleuScore corpus_bleu(const std::vector<Words>& candidates, const std::vector<std::vector<Words>>& references);

struct CiderScore {
  double mean = 0;
  std::vector<double> per_image;
};
CiderScore cider_d(const std::vector<Words>& candidates, const std::vector<std::vector<Words>>& references,
                   double sigma = 6.0);

}  // namespace coca::eval
