// Retrieval metrics (see the header for the definitions). Shapes: I images, T texts (rows),
// E embed dim.
#include "coca/eval/retrieval.h"

#include "coca/eval/common.h"

#include <algorithm>
#include <filesystem>
#include <string_view>
#include <unordered_map>

#include "coca/data/loader.h"
#include "coca/data/shard.h"
#include "coca/data/shard_index.h"
#include "coca/data/tokenizer.h"

namespace coca::eval {

namespace fs = std::filesystem;

std::string image_group(const std::string& key) {
  // coco:<image_id>:<annotation_id> -> coco:<image_id> (annotation id -1: the JSON had none)
  if (key.rfind("coco:", 0) != 0) return key;
  const size_t colon = key.find(':', 5);
  if (colon == std::string::npos) return key;
  auto all_digits = [](std::string_view v) {
    return !v.empty() && std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  std::string_view image(key.data() + 5, colon - 5), annotation(key.data() + colon + 1, key.size() - colon - 1);
  if (!annotation.empty() && annotation[0] == '-') annotation.remove_prefix(1);
  return all_digits(image) && all_digits(annotation) ? key.substr(0, colon) : key;
}

CaptionedSet group_by_key(std::vector<std::string> keys, std::vector<std::string> captions) {
  COCA_CHECK(keys.size() == captions.size(), "captioned set: ", keys.size(), " keys but ", captions.size(),
             " captions");
  CaptionedSet s;
  s.keys = std::move(keys);
  s.captions = std::move(captions);
  std::unordered_map<std::string, int64_t> image_of;
  for (int64_t r = 0; r < s.rows(); ++r) {
    std::string group = image_group(s.keys[r]);
    auto [it, fresh] = image_of.emplace(group, s.images());
    if (fresh) {
      s.image_keys.push_back(std::move(group));
      s.image_first_row.push_back(r);
      s.image_rows.emplace_back();
    }
    s.row_image.push_back(it->second);
    s.image_rows[it->second].push_back(r);
  }
  return s;
}

CaptionedSet load_captioned_set(const std::string& dir, int64_t max_rows) {
  ShardIndex index = ShardIndex::load(dir);
  std::vector<std::string> keys, captions;
  for (size_t i = 0; i < index.shards.size(); ++i) {
    if (max_rows > 0 && static_cast<int64_t>(keys.size()) >= max_rows) break;
    ShardReader r(index.shard_path(dir, i));
    COCA_CHECK(r.size() == index.shards[i].samples, "captioned set ", dir, ": shard ", r.path(), " holds ", r.size(),
               " rows but index.json says ", index.shards[i].samples);
    auto k = r.read_keys(0, r.size());
    auto c = r.read_captions(0, r.size());
    keys.insert(keys.end(), k.begin(), k.end());
    captions.insert(captions.end(), c.begin(), c.end());
  }
  if (max_rows > 0 && static_cast<int64_t>(keys.size()) > max_rows) {
    keys.resize(max_rows);
    captions.resize(max_rows);
  }
  return group_by_key(std::move(keys), std::move(captions));
}

int64_t rank_of_best(const float* scores, int64_t C, const std::vector<int64_t>& correct) {
  COCA_CHECK(!correct.empty(), "retrieval: a query has no correct candidate");
  int64_t best = correct[0];
  for (int64_t c : correct) {
    COCA_CHECK(c >= 0 && c < C, "retrieval: correct candidate ", c, " outside [0, ", C, ")");
    if (scores[c] > scores[best] || (scores[c] == scores[best] && c < best)) best = c;
  }
  int64_t ahead = 0;
  for (int64_t c = 0; c < C; ++c) ahead += scores[c] > scores[best] || (scores[c] == scores[best] && c < best);
  return ahead + 1;
}

RecallMetrics summarize_ranks(const std::vector<int64_t>& ranks) {
  RecallMetrics m;
  m.queries = static_cast<int64_t>(ranks.size());
  if (ranks.empty()) return m;
  double sum = 0;
  for (int64_t r : ranks) {
    m.r1 += r <= 1;
    m.r5 += r <= 5;
    m.r10 += r <= 10;
    sum += static_cast<double>(r);
  }
  const double n = static_cast<double>(ranks.size());
  m.r1 /= n, m.r5 /= n, m.r10 /= n;
  m.mean_rank = sum / n;
  std::vector<int64_t> s = ranks;
  std::sort(s.begin(), s.end());
  const size_t h = s.size() / 2;
  m.median_rank = s.size() % 2 ? static_cast<double>(s[h]) : 0.5 * static_cast<double>(s[h - 1] + s[h]);
  return m;
}

namespace {

// Ranks of queries [begin, end) of `queries` [Nq, E] against `candidates` [Nc, E], scored in
// blocks so that memory stays O(block * Nc).
std::vector<int64_t> rank_slice(const Tensor& queries, const Tensor& candidates, int64_t begin, int64_t end,
                                const std::function<std::vector<int64_t>(int64_t)>& correct_of) {
  std::vector<int64_t> out;
  const int64_t C = candidates.size(0), block = 256;
  Tensor ct = candidates.t();
  for (int64_t q0 = begin; q0 < end; q0 += block) {
    const int64_t q1 = std::min(end, q0 + block);
    Tensor s = matmul(queries.slice(0, q0, q1), ct).contiguous();  // [q1 - q0, C]
    const float* p = s.data<float>();
    for (int64_t q = q0; q < q1; ++q) out.push_back(rank_of_best(p + (q - q0) * C, C, correct_of(q)));
  }
  return out;
}

Tensor to_matrix(const std::vector<float>& v, int64_t rows, int64_t E, const char* what) {
  COCA_CHECK(static_cast<int64_t>(v.size()) == rows * E, "retrieval: gathered ", v.size() / std::max<int64_t>(E, 1),
             " ", what, " features, expected ", rows);
  return Tensor::from_vector(v, {rows, E});
}

}  // namespace

std::unique_ptr<BpeTokenizer> caption_tokenizer(const CoCa& model, const ShardIndex& index, const std::string& given,
                                                const std::string& dir, const char* flag, const std::string& what) {
  const CocaConfig& cfg = model.config();
  if (index.context_length == cfg.text.context_length) return nullptr;
  auto tok = std::make_unique<BpeTokenizer>(
      BpeTokenizer::load(resolve_tokenizer(given, index, dir, flag, cfg.text.vocab_size)));
  COCA_CHECK(tok->vocab_size() == cfg.text.vocab_size, what, ": tokenizer has ", tok->vocab_size(),
             " tokens but the model's vocab_size is ", cfg.text.vocab_size);
  return tok;
}

Tensor caption_tokens(const Batch& b, const CaptionedSet& set, const BpeTokenizer* tok, int context_length) {
  if (!tok) return b.tokens;
  std::vector<std::string> caps;
  for (int64_t r : b.indices) caps.push_back(set.captions[r]);
  return tok->encode_batch(caps, context_length);
}

RetrievalResult retrieval(const CoCa& model, const RetrievalOptions& o, const Reducer& reduce) {
  NoGradGuard no_grad;
  const CaptionedSet set = load_captioned_set(o.data);
  COCA_CHECK(set.rows() > 0, "retrieval data ", o.data, " holds no rows");
  EvalReader reader(reader_options(model, o.data, o.batch_size, o.rank, o.world));
  const int L = static_cast<int>(model.config().text.context_length);
  const int64_t E = model.config().embed_dim;
  const auto tok = caption_tokenizer(model, reader.index(), o.tokenizer, o.data, "retrieval", "retrieval");
  std::vector<float> my_text, my_images;  // this rank's rows in order; its images' first rows in order
  Batch b;
  while (reader.next(b)) {
    auto t = model.text->forward(caption_tokens(b, set, tok.get(), L).to(model.device()), /*trim_padding=*/true)
                 .features.contiguous()
                 .to_vector<float>();
    my_text.insert(my_text.end(), t.begin(), t.end());
    std::vector<int64_t> owners;  // batch positions whose row is its image's first row
    for (size_t i = 0; i < b.indices.size(); ++i)
      if (set.image_first_row[set.row_image[b.indices[i]]] == b.indices[i]) owners.push_back(static_cast<int64_t>(i));
    if (owners.empty()) continue;
    std::vector<Tensor> imgs;
    for (int64_t i : owners) imgs.push_back(b.images.slice(0, i, i + 1));
    Tensor images = owners.size() == b.indices.size() ? b.images : concat(imgs, 0);
    auto f = model.visual->forward(images.to(model.device())).features.contiguous().to_vector<float>();
    my_images.insert(my_images.end(), f.begin(), f.end());
  }
  const Tensor text = to_matrix(reduce.concat_f32(my_text), set.rows(), E, "text");
  const Tensor image = to_matrix(reduce.concat_f32(my_images), set.images(), E, "image");
  return rank_features(image, text, set, o.rank, o.world, reduce);
}

RetrievalResult rank_features(const Tensor& image, const Tensor& text, const CaptionedSet& set, int rank, int world,
                              const Reducer& reduce) {
  const int64_t I = set.images(), T = set.rows();
  COCA_CHECK(image.dim() == 2 && image.size(0) == I && text.dim() == 2 && text.size(0) == T &&
                 text.size(1) == image.size(1),
             "retrieval: features ", image.describe(), " and ", text.describe(), " do not match ", I, " images and ",
             T, " texts");
  auto i2t = rank_slice(image, text, I * rank / world, I * (rank + 1) / world,
                        [&](int64_t i) { return set.image_rows[i]; });
  auto t2i = rank_slice(text, image, T * rank / world, T * (rank + 1) / world,
                        [&](int64_t t) { return std::vector<int64_t>{set.row_image[t]}; });
  RetrievalResult r;
  r.image_to_text = summarize_ranks(reduce.concat(i2t));
  r.text_to_image = summarize_ranks(reduce.concat(t2i));
  r.images = I;
  r.texts = T;
  return r;
}

}  // namespace coca::eval
