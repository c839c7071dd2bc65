// Cached caption decoding and the three search methods. Shapes: R decoding rows (images x
// beams), L context length, w width, Q image tokens, V vocabulary.
#include "coca/eval/generate.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

namespace coca::eval {

namespace {

// One query per row against n keys. Row r's query is q[r * q_stride + (0..w)], head h its
// columns [h D, (h+1) D). Its keys are base + j * pos_stride + (0..w) and its values the same
// plus w, where base = kv + kv_row(r) * row_stride (kv_row null: r). out [R, w].
void attend_one_query(const float* q, int64_t q_stride, const float* kv, int64_t row_stride, int64_t pos_stride,
                      const int64_t* kv_row, int64_t R, int64_t n, int64_t w, int64_t heads, float* out) {
  const int64_t D = w / heads;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
  // Threads only pay off beyond a few tens of thousands of multiply-adds (one row at batch 1).
#pragma omp parallel for collapse(2) schedule(static) if (R * n * w >= (1 << 15))
  for (int64_t r = 0; r < R; ++r)
    for (int64_t h = 0; h < heads; ++h) {
      std::vector<float> p(n);
      const float* qh = q + r * q_stride + h * D;
      const float* base = kv + (kv_row ? kv_row[r] : r) * row_stride + h * D;
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < n; ++j) {
        const float* k = base + j * pos_stride;
        float s = 0;
        for (int64_t d = 0; d < D; ++d) s += qh[d] * k[d];
        p[j] = s * scale;
        mx = std::max(mx, p[j]);
      }
      float sum = 0;
      for (int64_t j = 0; j < n; ++j) sum += (p[j] = std::exp(p[j] - mx));
      float* o = out + r * w + h * D;
      std::fill(o, o + D, 0.0f);
      for (int64_t j = 0; j < n; ++j) {
        const float a = p[j] / sum;
        const float* v = base + j * pos_stride + w;
        for (int64_t d = 0; d < D; ++d) o[d] += a * v[d];
      }
    }
}

}  // namespace

CaptionDecoder::CaptionDecoder(const CoCa& model)
    : model_(model), L_(model.config().text.context_length), w_(model.config().text.width) {
  COCA_CHECK(model.has_decoder(), "caption decoder: model ", model.config().name,
             " is a CLIP (no multimodal decoder): it has no captions to generate");
  COCA_CHECK(model.dtype() == DType::f32, "caption decoder: the model must be float32, not ", dtype_name(model.dtype()));
  COCA_CHECK(model.config().multimodal.width == w_, "caption decoder: text width ", w_,
             " differs from the decoder width ", model.config().multimodal.width);
}

void CaptionDecoder::start(const Tensor& image_tokens, std::vector<int64_t> row_image) {
  COCA_CHECK(image_tokens.dim() == 3 && image_tokens.size(2) == w_ && image_tokens.dtype() == DType::f32,
             "caption decoder: image tokens ", image_tokens.describe(), " must be f32 [I, Q, ", w_, "]");
  for (int64_t i : row_image)
    COCA_CHECK(i >= 0 && i < image_tokens.size(0), "caption decoder: row reads image ", i, " of ", image_tokens.size(0));
  row_image_ = std::move(row_image);
  pos_ = 0;
  const auto& dec = *model_.text_decoder;
  const size_t layers = model_.text->transformer->resblocks->size() + dec.resblocks->size();
  caches_.assign(layers, std::vector<float>(static_cast<size_t>(rows() * L_ * 2 * w_)));
  cross_kv_.clear();
  for (const auto& block : *dec.cross_attn) {
    const auto& a = *block->attn;
    COCA_CHECK(a.packed(), "caption decoder: cross-attention must have packed projections");
    cross_kv_.push_back(linear(block->ln_1_kv->forward(image_tokens), a.in_proj_weight.slice(0, w_, 3 * w_),
                               a.in_proj_bias.slice(0, w_, 3 * w_))
                            .contiguous());  // [I, Q, 2w]
  }
}

Tensor CaptionDecoder::self_block(const nn::ResidualAttentionBlock& block, const Tensor& x,
                                  std::vector<float>& cache) const {
  const auto& a = *block.attn;
  const int64_t R = rows(), w = w_;
  Tensor qkv = linear(block.ln_1->forward(x), a.in_proj_weight, a.in_proj_bias).contiguous();  // [R, 1, 3w]
  const float* p = qkv.data<float>();
  for (int64_t r = 0; r < R; ++r)
    std::memcpy(cache.data() + (r * L_ + pos_) * 2 * w, p + r * 3 * w + w, sizeof(float) * 2 * w);
  Tensor o = Tensor::empty({R, 1, w});
  attend_one_query(p, 3 * w, cache.data(), L_ * 2 * w, 2 * w, nullptr, R, pos_ + 1, w, a.heads, o.data<float>());
  Tensor y = add(x, a.out_proj->forward(o));
  return add(y, block.mlp->forward(block.ln_2->forward(y)));
}

Tensor CaptionDecoder::cross_block(const nn::ResidualAttentionBlock& block, const Tensor& x, const Tensor& kv) const {
  const auto& a = *block.attn;
  const int64_t R = rows(), w = w_, Q = kv.size(1);
  Tensor q = linear(block.ln_1->forward(x), a.in_proj_weight.slice(0, 0, w), a.in_proj_bias.slice(0, 0, w))
                 .contiguous();  // [R, 1, w]
  Tensor o = Tensor::empty({R, 1, w});
  attend_one_query(q.data<float>(), w, kv.data<float>(), Q * 2 * w, 2 * w, row_image_.data(), R, Q, w, a.heads,
                   o.data<float>());
  Tensor y = add(x, a.out_proj->forward(o));
  return add(y, block.mlp->forward(block.ln_2->forward(y)));
}

Tensor CaptionDecoder::step(const std::vector<int32_t>& tokens) {
  const int64_t R = rows();
  COCA_CHECK(static_cast<int64_t>(tokens.size()) == R, "caption decoder: ", tokens.size(), " tokens for ", R, " rows");
  COCA_CHECK(pos_ < L_, "caption decoder: position ", pos_, " is past the context length ", L_);
  const auto& txt = *model_.text;
  const auto& dec = *model_.text_decoder;
  Tensor x = embedding(txt.token_embedding_weight, Tensor::from_vector(tokens, {R, 1}));  // [R, 1, w]
  x = add(x, txt.positional_embedding.slice(0, pos_, pos_ + 1));
  size_t c = 0;
  for (const auto& block : *txt.transformer->resblocks) x = self_block(*block, x, caches_[c++]);
  for (size_t i = 0; i < dec.resblocks->size(); ++i) {
    x = self_block(*(*dec.resblocks)[i], x, caches_[c++]);
    x = cross_block(*(*dec.cross_attn)[i], x, cross_kv_[i]);
  }
  ++pos_;
  Tensor logits = matmul(dec.ln_final->forward(x), dec.text_projection);  // [R, 1, V]
  return logits.reshape({R, logits.size(2)}).contiguous();
}

void CaptionDecoder::reorder(const std::vector<int64_t>& parents) {
  const int64_t R = rows(), Rn = static_cast<int64_t>(parents.size()), row = L_ * 2 * w_;
  for (int64_t p : parents) COCA_CHECK(p >= 0 && p < R, "caption decoder: reorder from row ", p, " of ", R);
  for (auto& cache : caches_) {
    std::vector<float> next(static_cast<size_t>(Rn * row));
    for (int64_t i = 0; i < Rn; ++i)  // only positions already written matter
      std::memcpy(next.data() + i * row, cache.data() + parents[i] * row, sizeof(float) * pos_ * 2 * w_);
    cache.swap(next);
  }
  std::vector<int64_t> images(Rn);
  for (int64_t i = 0; i < Rn; ++i) images[i] = row_image_[parents[i]];
  row_image_.swap(images);
}

Tensor uncached_next_logits(const CoCa& model, const std::vector<std::vector<int32_t>>& prefixes,
                            const Tensor& image_tokens) {
  const int64_t R = static_cast<int64_t>(prefixes.size()), L = model.config().text.context_length;
  COCA_CHECK(R > 0 && image_tokens.dim() == 3 && image_tokens.size(0) == R, "uncached logits: image tokens ",
             image_tokens.describe(), " must have one row per prefix (", R, ")");
  const int64_t n = static_cast<int64_t>(prefixes[0].size());
  COCA_CHECK(n >= 1 && n <= L, "uncached logits: prefix length ", n, " outside [1, ", L, "]");
  std::vector<int32_t> ids(R * L, 0);
  for (int64_t r = 0; r < R; ++r) {
    COCA_CHECK(static_cast<int64_t>(prefixes[r].size()) == n, "uncached logits: prefixes differ in length");
    std::copy(prefixes[r].begin(), prefixes[r].end(), ids.begin() + r * L);
  }
  TextEncoding te = model.text->forward(Tensor::from_vector(ids, {R, L}));
  Tensor logits = model.text_decoder->forward(te.tokens.slice(1, 0, n), image_tokens);  // [R, n, V]
  return logits.select(1, n - 1).contiguous();
}

DecodeMethod parse_decode_method(const std::string& name) {
  if (name == "greedy") return DecodeMethod::greedy;
  if (name == "beam") return DecodeMethod::beam;
  if (name == "sample") return DecodeMethod::sample;
  throw Error(str_cat("decoding method '", name, "' is not one of greedy, beam, sample"));
}

namespace {

struct Resolved {
  int sot, eot, max_len;
};

Resolved resolve(const CoCa& model, const GenerateOptions& o) {
  const int V = static_cast<int>(model.config().multimodal.vocab_size);
  const int L = static_cast<int>(model.config().text.context_length);
  Resolved r{o.sot >= 0 ? o.sot : V - 2, o.eot >= 0 ? o.eot : V - 1, L - 1};
  if (o.max_length > 0 && o.max_length < L - 1) r.max_len = o.max_length;
  COCA_CHECK(r.sot < V && r.eot < V, "generate: start/end-of-text ids ", r.sot, "/", r.eot, " outside the vocabulary of ", V);
  COCA_CHECK(r.max_len >= 1, "generate: context length ", L, " leaves no room to generate");
  return r;
}

int32_t argmax_token(const float* logits, int64_t V, int sot) {
  int32_t best = sot == 0 ? 1 : 0;
  for (int64_t v = 0; v < V; ++v)
    if (v != sot && logits[v] > logits[best]) best = static_cast<int32_t>(v);
  return best;
}

int32_t sample_token(const float* logits, int64_t V, int sot, const GenerateOptions& o, Generator& gen) {
  std::vector<std::pair<double, int32_t>> c;  // (logit / temperature, token), most probable first
  c.reserve(V);
  for (int64_t v = 0; v < V; ++v)
    if (v != sot) c.push_back({logits[v] / o.temperature, static_cast<int32_t>(v)});
  std::sort(c.begin(), c.end(), [](auto& a, auto& b) { return a.first != b.first ? a.first > b.first : a.second < b.second; });
  if (o.top_k > 0 && static_cast<size_t>(o.top_k) < c.size()) c.resize(o.top_k);
  const double mx = c[0].first;
  double total = 0;
  for (auto& e : c) total += (e.first = std::exp(e.first - mx));
  if (o.top_p < 1.0) {
    double cum = 0;
    size_t keep = 0;
    while (keep < c.size() && (keep == 0 || cum < o.top_p * total)) cum += c[keep++].first;
    c.resize(keep);
    total = cum;
  }
  double u = gen.uniform() * total;
  for (auto& e : c) {
    if (u < e.first) return e.second;
    u -= e.first;
  }
  return c.back().second;
}

// Greedy and sampling: one row per image; finished rows are dropped from the caches.
std::vector<std::vector<int32_t>> generate_single(const CoCa& model, const Tensor& image_tokens, const GenerateOptions& o,
                                                  const std::vector<int64_t>& image_ids, const Resolved& rs) {
  const int64_t I = image_tokens.size(0), V = model.config().multimodal.vocab_size;
  std::vector<std::vector<int32_t>> out(I);
  std::vector<int64_t> live(I);  // image of each row
  std::iota(live.begin(), live.end(), 0);
  std::vector<Generator> gens;
  for (int64_t i = 0; i < I; ++i) gens.emplace_back(o.seed ^ (0x9E3779B97F4A7C15ULL * static_cast<uint64_t>(image_ids[i] + 1)));
  CaptionDecoder dec(model);
  dec.start(image_tokens, live);
  std::vector<int32_t> next(I, rs.sot);
  for (int step = 0; step < rs.max_len && !live.empty(); ++step) {
    Tensor logits = dec.step(next);
    const float* lp = logits.data<float>();
    std::vector<int64_t> keep, keep_image;
    std::vector<int32_t> keep_token;
    for (size_t r = 0; r < live.size(); ++r) {
      const int64_t img = live[r];
      const int32_t tok = o.method == DecodeMethod::sample ? sample_token(lp + r * V, V, rs.sot, o, gens[img])
                                                           : argmax_token(lp + r * V, V, rs.sot);
      if (tok == rs.eot) continue;
      out[img].push_back(tok);
      keep.push_back(static_cast<int64_t>(r));
      keep_image.push_back(img);
      keep_token.push_back(tok);
    }
    if (keep.size() != live.size() && !keep.empty()) dec.reorder(keep);
    live.swap(keep_image);
    next.swap(keep_token);
  }
  return out;
}

struct Hypothesis {
  std::vector<int32_t> tokens;  // generated, without end-of-text
  double logp = 0;              // summed log-probability
};

// Beam search; rows of one image are contiguous. See GenerateOptions for the rules.
std::vector<std::vector<int32_t>> generate_beam(const CoCa& model, const Tensor& image_tokens, const GenerateOptions& o,
                                                const Resolved& rs) {
  const int64_t I = image_tokens.size(0), V = model.config().multimodal.vocab_size, K = o.beams;
  COCA_CHECK(K >= 1, "beam search: beam count ", K, " must be at least 1");
  const int64_t cand_per_row = std::min<int64_t>(2 * K, V - 1);
  auto normalised = [&](double logp, size_t len) { return logp / std::pow(static_cast<double>(len), o.length_penalty); };
  std::vector<std::vector<std::pair<double, std::vector<int32_t>>>> finished(I);  // (score, tokens) per image
  std::vector<Hypothesis> rows(I);
  std::vector<int64_t> row_image(I);
  std::iota(row_image.begin(), row_image.end(), 0);
  CaptionDecoder dec(model);
  dec.start(image_tokens, row_image);
  std::vector<int32_t> next(I, rs.sot);
  std::vector<double> lsm(V);
  for (int step = 0; step < rs.max_len && !rows.empty(); ++step) {
    Tensor logits = dec.step(next);
    const float* lp = logits.data<float>();
    std::vector<Hypothesis> new_rows;
    std::vector<int64_t> parents, new_image;
    std::vector<int32_t> new_next;
    struct Candidate {
      double score;
      int64_t row;
      int32_t token;
    };
    for (size_t r0 = 0; r0 < rows.size();) {
      const int64_t img = row_image[r0];
      size_t r1 = r0;
      std::vector<Candidate> cands;
      for (; r1 < rows.size() && row_image[r1] == img; ++r1) {
        const float* l = lp + r1 * V;
        double mx = -std::numeric_limits<double>::infinity(), sum = 0;
        for (int64_t v = 0; v < V; ++v)
          if (v != rs.sot) mx = std::max(mx, static_cast<double>(l[v]));
        for (int64_t v = 0; v < V; ++v)
          if (v != rs.sot) sum += std::exp(l[v] - mx);
        const double lse = mx + std::log(sum);
        std::vector<int32_t> idx;
        for (int64_t v = 0; v < V; ++v)
          if (v != rs.sot) idx.push_back(static_cast<int32_t>(v)), lsm[v] = rows[r1].logp + (l[v] - lse);
        std::partial_sort(idx.begin(), idx.begin() + cand_per_row, idx.end(),
                          [&](int32_t a, int32_t b) { return lsm[a] != lsm[b] ? lsm[a] > lsm[b] : a < b; });
        for (int64_t k = 0; k < cand_per_row; ++k) cands.push_back({lsm[idx[k]], static_cast<int64_t>(r1), idx[k]});
      }
      std::stable_sort(cands.begin(), cands.end(), [](const Candidate& a, const Candidate& b) {
        return a.score != b.score ? a.score > b.score : (a.row != b.row ? a.row < b.row : a.token < b.token);
      });
      std::vector<Hypothesis> live;
      std::vector<int64_t> live_parent;
      for (size_t rank = 0; rank < cands.size() && static_cast<int64_t>(live.size()) < K; ++rank) {
        const Candidate& c = cands[rank];
        if (c.token == rs.eot) {
          // Only an end-of-text among the best K candidates finishes a hypothesis.
          if (static_cast<int64_t>(rank) < K)
            finished[img].push_back({normalised(c.score, rows[c.row].tokens.size() + 1), rows[c.row].tokens});
          continue;
        }
        Hypothesis h{rows[c.row].tokens, c.score};
        h.tokens.push_back(c.token);
        live.push_back(std::move(h));
        live_parent.push_back(c.row);
      }
      const bool done = static_cast<int64_t>(finished[img].size()) >= K;
      if (!done && step + 1 == rs.max_len)
        for (auto& h : live) finished[img].push_back({normalised(h.logp, h.tokens.size()), h.tokens});
      else if (!done)
        for (size_t k = 0; k < live.size(); ++k) {
          new_next.push_back(live[k].tokens.back());
          new_rows.push_back(std::move(live[k]));
          parents.push_back(live_parent[k]);
          new_image.push_back(img);
        }
      r0 = r1;
    }
    if (!parents.empty()) dec.reorder(parents);
    rows.swap(new_rows);
    row_image.swap(new_image);
    next.swap(new_next);
  }
  std::vector<std::vector<int32_t>> out(I);
  for (int64_t i = 0; i < I; ++i) {
    COCA_CHECK(!finished[i].empty(), "beam search: image ", i, " finished no hypothesis");
    size_t best = 0;
    for (size_t k = 1; k < finished[i].size(); ++k)
      if (finished[i][k].first > finished[i][best].first) best = k;
    out[i] = finished[i][best].second;
  }
  return out;
}

}  // namespace

std::vector<std::vector<int32_t>> generate(const CoCa& model, const Tensor& image_tokens, const GenerateOptions& o,
                                           const std::vector<int64_t>& image_ids) {
  NoGradGuard no_grad;
  COCA_CHECK(image_tokens.dim() == 3 && static_cast<int64_t>(image_ids.size()) == image_tokens.size(0), "generate: ",
             image_ids.size(), " image ids for image tokens ", image_tokens.describe());
  COCA_CHECK(o.temperature > 0, "generate: temperature ", o.temperature, " must be positive");
  COCA_CHECK(o.top_p > 0 && o.top_p <= 1, "generate: top-p ", o.top_p, " must be in (0, 1]");
  COCA_CHECK(o.top_k >= 0, "generate: top-k ", o.top_k, " must be >= 0");
  const Resolved rs = resolve(model, o);
  if (image_tokens.size(0) == 0) return {};
  Tensor tokens = image_tokens.contiguous();
  if (o.method == DecodeMethod::beam) return generate_beam(model, tokens, o, rs);
  return generate_single(model, tokens, o, image_ids, rs);
}

}  // namespace coca::eval
