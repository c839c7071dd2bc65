// BLEU and CIDEr-D following pycocoevalcap's bleu_scorer.py and cider_scorer.py line by line
// (see the header for the definitions and the one deliberate difference, tokenisation).
#include "coca/eval/caption_metrics.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <unordered_map>
#include <unordered_set>

#include "coca/tensor/error.h"

namespace coca::eval {

namespace {

constexpr int kMaxN = 4;

// N-gram counts of one caption, n-grams keyed by their words joined with '\x1f'.
using NgramCounts = std::array<std::unordered_map<std::string, double>, kMaxN>;

NgramCounts count_ngrams(const Words& w) {
  NgramCounts c;
  for (int n = 1; n <= kMaxN; ++n)
    for (size_t i = 0; i + n <= w.size(); ++i) {
      std::string key = w[i];
      for (int k = 1; k < n; ++k) key += '\x1f' + w[i + k];
      c[n - 1][key] += 1;
    }
  return c;
}

void check_inputs(const char* what, const std::vector<Words>& cands, const std::vector<std::vector<Words>>& refs) {
  COCA_CHECK(cands.size() == refs.size(), what, ": ", cands.size(), " candidates but ", refs.size(),
             " reference lists");
  for (size_t i = 0; i < refs.size(); ++i)
    COCA_CHECK(!refs[i].empty(), what, ": candidate ", i, " has no reference captions");
}

}  // namespace

std::vector<std::string> caption_words(std::string_view caption) {
  std::vector<std::string> out;
  std::string cur;
  for (char ch : caption) {
    const unsigned char u = static_cast<unsigned char>(ch);
    if (std::isspace(u) || (u < 128 && std::ispunct(u))) {
      if (!cur.empty()) out.push_back(std::move(cur)), cur.clear();
    } else {
      cur += static_cast<char>(u < 128 ? std::tolower(u) : u);
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

BleuScore corpus_bleu(const std::vector<Words>& cands, const std::vector<std::vector<Words>>& refs) {
  check_inputs("BLEU", cands, refs);
  constexpr double tiny = 1e-15, small = 1e-9;
  double guess[kMaxN] = {0, 0, 0, 0}, correct[kMaxN] = {0, 0, 0, 0};
  BleuScore s;
  for (size_t i = 0; i < cands.size(); ++i) {
    // Per n-gram, the largest count in any one reference.
    std::unordered_map<std::string, double> max_ref[kMaxN];
    const double test_len = static_cast<double>(cands[i].size());
    double closest = -1;
    for (const auto& r : refs[i]) {
      const double len = static_cast<double>(r.size());
      if (closest < 0 || std::abs(len - test_len) < std::abs(closest - test_len) ||
          (std::abs(len - test_len) == std::abs(closest - test_len) && len < closest))
        closest = len;
      NgramCounts rc = count_ngrams(r);
      for (int n = 0; n < kMaxN; ++n)
        for (auto& [g, c] : rc[n]) max_ref[n][g] = std::max(max_ref[n][g], c);
    }
    NgramCounts tc = count_ngrams(cands[i]);
    for (int n = 0; n < kMaxN; ++n) {
      guess[n] += std::max(test_len - n, 0.0);
      for (auto& [g, c] : tc[n]) {
        auto it = max_ref[n].find(g);
        if (it != max_ref[n].end()) correct[n] += std::min(c, it->second);
      }
    }
    s.test_length += test_len;
    s.ref_length += closest;
  }
  double product = 1.0;
  for (int n = 0; n < kMaxN; ++n) {
    product *= (correct[n] + tiny) / (guess[n] + small);
    s.bleu[n] = std::pow(product, 1.0 / (n + 1));
  }
  const double ratio = (s.test_length + tiny) / (s.ref_length + small);
  if (ratio < 1)
    for (double& b : s.bleu) b *= std::exp(1 - 1 / ratio);
  return s;
}

namespace {

struct TfIdf {
  std::array<std::unordered_map<std::string, double>, kMaxN> vec;
  std::array<double, kMaxN> norm{};
  double length = 0;  // bigram count, as pycocoevalcap's counts2vec computes it
};

TfIdf tf_idf(const NgramCounts& counts, const std::unordered_map<std::string, double>& df, double log_images) {
  TfIdf t;
  for (int n = 0; n < kMaxN; ++n) {
    for (auto& [g, tf] : counts[n]) {
      auto it = df.find(g);
      const double d = std::log(std::max(1.0, it == df.end() ? 0.0 : it->second));
      const double v = tf * (log_images - d);
      t.vec[n][g] = v;
      t.norm[n] += v * v;
      if (n == 1) t.length += tf;
    }
    t.norm[n] = std::sqrt(t.norm[n]);
  }
  return t;
}

}  // namespace

CiderScore cider_d(const std::vector<Words>& cands, const std::vector<std::vector<Words>>& refs, double sigma) {
  check_inputs("CIDEr-D", cands, refs);
  CiderScore s;
  if (cands.empty()) return s;
  std::vector<std::vector<NgramCounts>> ref_counts(refs.size());
  std::unordered_map<std::string, double> df;  // images whose references contain the n-gram
  for (size_t i = 0; i < refs.size(); ++i) {
    std::unordered_set<std::string> seen;
    for (const auto& r : refs[i]) {
      ref_counts[i].push_back(count_ngrams(r));
      for (auto& m : ref_counts[i].back())
        for (auto& kv : m) seen.insert(kv.first);
    }
    for (auto& g : seen) df[g] += 1;
  }
  const double log_images = std::log(static_cast<double>(refs.size()));
  for (size_t i = 0; i < cands.size(); ++i) {
    TfIdf hyp = tf_idf(count_ngrams(cands[i]), df, log_images);
    double score[kMaxN] = {0, 0, 0, 0};
    for (const auto& rc : ref_counts[i]) {
      TfIdf ref = tf_idf(rc, df, log_images);
      const double delta = hyp.length - ref.length;
      for (int n = 0; n < kMaxN; ++n) {
        double val = 0;
        for (auto& [g, v] : hyp.vec[n]) {
          auto it = ref.vec[n].find(g);
          const double r = it == ref.vec[n].end() ? 0.0 : it->second;
          val += std::min(v, r) * r;  // CIDEr-D's clipping
        }
        if (hyp.norm[n] != 0 && ref.norm[n] != 0) val /= hyp.norm[n] * ref.norm[n];
        val *= std::exp(-(delta * delta) / (2 * sigma * sigma));
        score[n] += val;
      }
    }
    double avg = (score[0] + score[1] + score[2] + score[3]) / kMaxN;
    avg = avg / static_cast<double>(refs[i].size()) * 10.0;
    s.per_image.push_back(avg);
    s.mean += avg;
  }
  s.mean /= static_cast<double>(cands.size());
  return s;
}

}  // namespace coca::eval
