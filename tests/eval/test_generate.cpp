// Caption decoding on a random micro CoCa: the key/value cache reproduces the uncached towers,
// beam search with one beam is greedy decoding, a wide beam over two steps is the exhaustive
// search, and sampling is reproducible per image.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "coca/eval/generate.h"
#include "model/micro.h"

using namespace coca;
using namespace coca::eval;

namespace {

struct Fixture {
  CocaConfig cfg = test::micro_config();
  CoCa model{cfg};
  Tensor image_tokens;  // [4, Q-1, E]
  Fixture(double logit_gain = 1.0) {
    model.initialize(7);
    NoGradGuard no_grad;
    if (logit_gain != 1.0) {  // sharper next-token distributions: end-of-text gets chosen
      Tensor& p = model.text_decoder->text_projection;
      p.copy_(mul_scalar(p, logit_gain));
    }
    Generator gen(3);
    image_tokens = model.visual->forward(Tensor::randn({4, 3, 16, 16}, gen)).tokens.contiguous();
  }
  int sot() const { return static_cast<int>(cfg.text.vocab_size) - 2; }
  int eot() const { return static_cast<int>(cfg.text.vocab_size) - 1; }
  Tensor rows_of(const std::vector<int64_t>& images) const {
    std::vector<Tensor> parts;
    for (int64_t i : images) parts.push_back(image_tokens.slice(0, i, i + 1));
    return concat(parts, 0);
  }
};

double max_rel_diff(const Tensor& a, const Tensor& b) {
  auto x = a.to_double_vector(), y = b.to_double_vector();
  EXPECT_EQ(x.size(), y.size());
  double d = 0, s = 0;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
    d = std::max(d, std::abs(x[i] - y[i]));
    s = std::max(s, std::abs(y[i]));
  }
  return d / s;
}

}  // namespace

TEST(CaptionDecoder, CachedLogitsEqualUncachedThroughReorders) {
  Fixture f;
  NoGradGuard no_grad;
  const int64_t L = f.cfg.text.context_length, V = f.cfg.text.vocab_size;
  std::vector<int64_t> row_image = {0, 2, 1};
  std::vector<std::vector<int32_t>> prefixes(3, std::vector<int32_t>{static_cast<int32_t>(f.sot())});
  CaptionDecoder dec(f.model);
  dec.start(f.image_tokens, row_image);
  Generator gen(11);
  for (int64_t t = 0; t < L; ++t) {
    std::vector<int32_t> next;
    for (auto& p : prefixes) next.push_back(p.back());
    Tensor cached = dec.step(next);
    Tensor reference = uncached_next_logits(f.model, prefixes, f.rows_of(row_image));
    ASSERT_EQ(cached.shape(), (Shape{static_cast<int64_t>(prefixes.size()), V}));
    EXPECT_LT(max_rel_diff(cached, reference), 1e-5) << "position " << t;
    if (t == 2) {  // rows continue from others, one is repeated, one dropped
      std::vector<int64_t> parents = {2, 0, 2, 1};
      dec.reorder(parents);
      std::vector<std::vector<int32_t>> p2;
      std::vector<int64_t> img2;
      for (int64_t p : parents) p2.push_back(prefixes[p]), img2.push_back(row_image[p]);
      prefixes = p2;
      row_image = img2;
    }
    for (auto& p : prefixes) p.push_back(1 + static_cast<int32_t>(gen.below(V - 3)));
  }
  EXPECT_THROW(dec.step(std::vector<int32_t>(prefixes.size(), 1)), Error);  // past the context
}

TEST(CaptionDecoder, RowsDoNotInteract) {
  // A row's logits do not depend on the other rows of the batch (nor on their images).
  Fixture f;
  NoGradGuard no_grad;
  CaptionDecoder a(f.model), b(f.model);
  a.start(f.image_tokens, {0, 1});
  b.start(f.image_tokens, {1});
  a.step({f.sot(), f.sot()});
  b.step({f.sot()});
  Tensor la = a.step({5, 9}), lb = b.step({9});
  EXPECT_LT(max_rel_diff(la.slice(0, 1, 2), lb), 1e-6);
}

TEST(Generate, OneBeamIsGreedy) {
  Fixture f(8.0);
  std::vector<int64_t> ids = {0, 1, 2, 3};
  GenerateOptions greedy;
  auto g = generate(f.model, f.image_tokens, greedy, ids);
  GenerateOptions beam;
  beam.method = DecodeMethod::beam;
  beam.beams = 1;
  beam.length_penalty = 0.6;
  auto b = generate(f.model, f.image_tokens, beam, ids);
  EXPECT_EQ(g, b);
  // The fixture must exercise both endings: one caption stopped by end-of-text, one by length.
  const size_t max_len = f.cfg.text.context_length - 1;
  bool short_one = false, full_one = false;
  for (auto& c : g) {
    short_one |= c.size() < max_len;
    full_one |= c.size() == max_len;
    for (int32_t t : c) EXPECT_TRUE(t != f.sot() && t != f.eot());
  }
  EXPECT_TRUE(short_one && full_one);
}

TEST(Generate, GreedyFollowsUncachedArgmax) {
  Fixture f(8.0);
  auto g = generate(f.model, f.image_tokens.slice(0, 1, 2), GenerateOptions{}, {1});
  std::vector<int32_t> prefix = {static_cast<int32_t>(f.sot())};
  std::vector<int32_t> expected;
  const int64_t V = f.cfg.text.vocab_size;
  for (int64_t t = 0; t + 1 < f.cfg.text.context_length; ++t) {
    NoGradGuard no_grad;
    auto l = uncached_next_logits(f.model, {prefix}, f.image_tokens.slice(0, 1, 2)).to_vector<float>();
    int32_t best = 0;
    for (int32_t v = 1; v < V; ++v)
      if (v != f.sot() && l[v] > l[best]) best = v;
    if (best == f.eot()) break;
    expected.push_back(best);
    prefix.push_back(best);
  }
  EXPECT_EQ(g[0], expected);
}

TEST(Generate, WideBeamOverTwoStepsIsExhaustive) {
  // With beams >= V - 1 and two steps, every first token is kept, so the result is the best of
  // "eot" (length 1) and every "a eot" / "a b" (length 2) by logp / length^alpha. A negative
  // alpha favours the short "eot", so both kinds of winner are checked.
  Fixture f(3.0);
  NoGradGuard no_grad;
  const int64_t V = f.cfg.text.vocab_size;
  const int32_t sot = f.sot(), eot = f.eot();
  std::set<size_t> winner_lengths;
  for (int64_t img = 0; img < 4; ++img) {
    Tensor it = f.image_tokens.slice(0, img, img + 1);
    // Log-probabilities over the tokens other than start-of-text, for each prefix.
    auto log_probs = [&](const std::vector<std::vector<int32_t>>& prefixes) {
      const int64_t R = static_cast<int64_t>(prefixes.size());
      auto l = uncached_next_logits(f.model, prefixes, it.expand({R, it.size(1), it.size(2)})).to_vector<float>();
      std::vector<std::vector<double>> out(R, std::vector<double>(V));
      for (int64_t r = 0; r < R; ++r) {
        const float* row = l.data() + r * V;
        double mx = -1e300, s = 0;
        for (int64_t v = 0; v < V; ++v)
          if (v != sot) mx = std::max(mx, static_cast<double>(row[v]));
        for (int64_t v = 0; v < V; ++v)
          if (v != sot) s += std::exp(row[v] - mx);
        for (int64_t v = 0; v < V; ++v) out[r][v] = row[v] - mx - std::log(s);
      }
      return out;
    };
    const auto first = log_probs({{sot}})[0];
    std::vector<int32_t> firsts;
    std::vector<std::vector<int32_t>> prefixes;
    for (int32_t a = 0; a < V; ++a)
      if (a != sot && a != eot) firsts.push_back(a), prefixes.push_back({sot, a});
    const auto second = log_probs(prefixes);
    for (double alpha : {0.7, -1.0}) {
      double best = first[eot];  // length 1
      std::vector<int32_t> best_tokens;
      for (size_t i = 0; i < firsts.size(); ++i)
        for (int32_t b = 0; b < V; ++b) {
          if (b == sot) continue;
          const double score = (first[firsts[i]] + second[i][b]) / std::pow(2.0, alpha);
          if (score > best) {
            best = score;
            best_tokens = b == eot ? std::vector<int32_t>{firsts[i]} : std::vector<int32_t>{firsts[i], b};
          }
        }
      GenerateOptions o;
      o.method = DecodeMethod::beam;
      o.beams = static_cast<int>(V - 1);
      o.max_length = 2;
      o.length_penalty = alpha;
      EXPECT_EQ(generate(f.model, it, o, {img})[0], best_tokens) << "image " << img << " alpha " << alpha;
      winner_lengths.insert(best_tokens.size());
    }
  }
  EXPECT_TRUE(winner_lengths.count(0) && winner_lengths.count(2));  // the fixture covers both
}

TEST(Generate, SamplingIsPerImageReproducible) {
  Fixture f;
  GenerateOptions s;
  s.method = DecodeMethod::sample;
  s.seed = 42;
  s.temperature = 0.9;
  s.top_k = 20;
  s.top_p = 0.95;
  auto all = generate(f.model, f.image_tokens, s, {10, 11, 12, 13});
  auto one = generate(f.model, f.image_tokens.slice(0, 2, 3), s, {12});
  EXPECT_EQ(all[2], one[0]);  // independent of which images share the batch
  EXPECT_EQ(all, generate(f.model, f.image_tokens, s, {10, 11, 12, 13}));
  s.seed = 43;
  EXPECT_NE(all, generate(f.model, f.image_tokens, s, {10, 11, 12, 13}));
}

TEST(Generate, SamplingWithTopOneIsGreedy) {
  Fixture f(8.0);
  std::vector<int64_t> ids = {0, 1, 2, 3};
  auto g = generate(f.model, f.image_tokens, GenerateOptions{}, ids);
  GenerateOptions k1;
  k1.method = DecodeMethod::sample;
  k1.top_k = 1;
  EXPECT_EQ(generate(f.model, f.image_tokens, k1, ids), g);
  GenerateOptions p0;
  p0.method = DecodeMethod::sample;
  p0.top_p = 1e-9;
  EXPECT_EQ(generate(f.model, f.image_tokens, p0, ids), g);
}

TEST(Generate, RejectsBadOptions) {
  Fixture f;
  GenerateOptions o;
  o.temperature = 0;
  EXPECT_THROW(generate(f.model, f.image_tokens, o, {0, 1, 2, 3}), Error);
  GenerateOptions b;
  b.method = DecodeMethod::beam;
  b.beams = 0;
  EXPECT_THROW(generate(f.model, f.image_tokens, b, {0, 1, 2, 3}), Error);
  EXPECT_THROW(generate(f.model, f.image_tokens, GenerateOptions{}, {0}), Error);
  EXPECT_THROW(parse_decode_method("nucleus"), Error);
}
