// CoCa forward (spec sections 2-4). Shapes: B batch, L context length, w text width,
// E embed dim (= decoder width), Q pooler queries, N = grid^2 + 1 image tokens.
#include "coca/model/coca.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "coca/autograd/checkpoint.h"

namespace coca {

Transformer::Transformer(int64_t width, int64_t layers, int64_t heads, double mlp_ratio, DType dtype) {
  resblocks = register_module("resblocks", std::make_shared<nn::ModuleList<Block>>());
  for (int64_t i = 0; i < layers; ++i)
    resblocks->push_back(std::make_shared<Block>(width, heads, mlp_ratio, false, dtype));
}

namespace {

// One residual block, through a checkpoint when `checkpointed` (and grad mode is on).
Tensor run_block(const Block& block, const Tensor& x, const Tensor& kv, const AttentionMask& mask, bool checkpointed) {
  if (!checkpointed || !grad_enabled()) return block.forward(x, kv, mask);
  auto fn = [&block, mask](const std::vector<Tensor>& in) { return block.forward(in[0], in[1], mask); };
  return checkpoint(fn, {x, kv}, block.parameters());
}

}  // namespace

Tensor Transformer::forward(Tensor x, const AttentionMask& mask) const {
  for (const auto& block : *resblocks) x = run_block(*block, x, Tensor(), mask, grad_checkpointing);
  return x;
}

AttentionalPooler::AttentionalPooler(int64_t dim, int64_t kdim, int64_t heads, int64_t queries, DType dtype) {
  query = register_parameter("query", Tensor::zeros({queries, dim}, dtype));
  attn = register_module("attn", std::make_shared<nn::MultiheadAttention>(dim, heads, kdim, dtype));
  ln_q = register_module("ln_q", std::make_shared<nn::LayerNorm>(dim, dtype));
  ln_k = register_module("ln_k", std::make_shared<nn::LayerNorm>(kdim, dtype));
}

Tensor AttentionalPooler::forward(const Tensor& x) const {
  const int64_t B = x.size(0);
  Tensor kv = ln_k->forward(x);                                               // [B, N, kdim]
  Tensor q = ln_q->forward(query).unsqueeze(0).expand({B, query.size(0), query.size(1)});  // [B, Q, d]
  return attn->forward(q, kv, {});
}

VisionTransformer::VisionTransformer(const CocaConfig& c, DType dtype) : cfg(c.vision), embed_dim(c.embed_dim) {
  const int64_t w = cfg.width, p = cfg.patch_size, n = cfg.grid() * cfg.grid() + 1;
  const int64_t pool_dim = cfg.attentional_pool ? embed_dim : w;  // what ln_post and proj see
  patch_dropout = cfg.patch_dropout;
  output_tokens = !c.clip;
  // Registration order follows OpenCLIP's state_dict order.
  class_embedding = register_parameter("class_embedding", Tensor::zeros({w}, dtype));
  positional_embedding = register_parameter("positional_embedding", Tensor::zeros({n, w}, dtype));
  proj = register_parameter("proj", Tensor::zeros({pool_dim, embed_dim}, dtype));
  conv1 = register_module("conv1", std::make_shared<nn::Container>());
  conv1_weight = conv1->param("weight", Tensor::zeros({w, 3, p, p}, dtype));
  ln_pre = register_module("ln_pre", std::make_shared<nn::LayerNorm>(w, dtype));
  transformer = register_module("transformer", std::make_shared<Transformer>(w, cfg.layers, cfg.heads(), cfg.mlp_ratio, dtype));
  if (cfg.attentional_pool)
    attn_pool = register_module("attn_pool", std::make_shared<AttentionalPooler>(embed_dim, w, cfg.attn_pooler_heads,
                                                                                 cfg.attn_pooler_queries, dtype));
  ln_post = register_module("ln_post", std::make_shared<nn::LayerNorm>(pool_dim, dtype));
}

Tensor VisionTransformer::embed(const Tensor& images) const {
  const int64_t B = images.size(0), p = cfg.patch_size, g = cfg.grid(), w = cfg.width;
  COCA_CHECK(images.dim() == 4 && images.size(1) == 3 && images.size(2) == cfg.image_size &&
                 images.size(3) == cfg.image_size,
             "visual: images ", images.describe(), " must be [B, 3, ", cfg.image_size, ", ", cfg.image_size, "]");
  // Patchify as a matmul: [B, 3, g, p, g, p] -> [B, g*g, 3*p*p] in (channel, row, col) order.
  Tensor patches = images.reshape({B, 3, g, p, g, p}).permute({0, 2, 4, 1, 3, 5}).reshape({B, g * g, 3 * p * p});
  Tensor x = linear(patches, conv1_weight.reshape({w, 3 * p * p}));  // [B, g*g, w]
  Tensor cls = class_embedding.reshape({1, 1, w}).expand({B, 1, w});
  x = add(concat({cls, x}, 1), positional_embedding);  // [B, N, w]
  if (training && patch_dropout > 0) {
    COCA_CHECK(patch_dropout_gen != nullptr, "visual: patch dropout in training needs a generator");
    // Keep the class token and a random subset of patches per sample, gathered as rows of
    // [B * N, w] with the embedding op (its backward scatters into the kept rows).
    const int64_t N = g * g + 1, P = g * g;
    const int64_t keep = std::max<int64_t>(1, static_cast<int64_t>(P * (1.0 - patch_dropout)));
    std::vector<int32_t> rows(B * (keep + 1));
    std::vector<int32_t> perm(P);
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t i = 0; i < P; ++i) perm[i] = static_cast<int32_t>(i + 1);
      for (int64_t i = 0; i < keep; ++i)  // partial Fisher-Yates: the first `keep` are the sample
        std::swap(perm[i], perm[i + static_cast<int64_t>(patch_dropout_gen->below(P - i))]);
      std::sort(perm.begin(), perm.begin() + keep);
      int32_t* r = rows.data() + b * (keep + 1);
      r[0] = static_cast<int32_t>(b * N);
      for (int64_t i = 0; i < keep; ++i) r[i + 1] = static_cast<int32_t>(b * N + perm[i]);
    }
    Tensor index = Tensor::from_vector(rows, {B, keep + 1}).to(x.device());
    x = embedding(x.reshape({B * N, w}), index);  // [B, 1 + keep, w]
  }
  return ln_pre->forward(x);
}

ImageEncoding VisionTransformer::forward(const Tensor& images) const {
  Tensor x = transformer->forward(embed(images), {});
  ImageEncoding out;
  if (!attn_pool) {  // the class token; the patch tokens after ln_post go to the decoder
    if (!output_tokens) {
      out.features = l2_normalize(matmul(ln_post->forward(x.select(1, 0)), proj));
      return out;
    }
    x = ln_post->forward(x);  // [B, N, w]
    out.features = l2_normalize(matmul(x.select(1, 0), proj));
    out.tokens = x.slice(1, 1, x.size(1));
    return out;
  }
  Tensor pooled = ln_post->forward(attn_pool->forward(x));  // [B, Q, E]
  const int64_t Q = pooled.size(1);
  out.features = l2_normalize(matmul(pooled.select(1, 0), proj));
  if (output_tokens) out.tokens = pooled.slice(1, 1, Q);
  return out;
}

TextTransformer::TextTransformer(const CocaConfig& c, DType dt) : cfg(c.text), dtype(dt) {
  const int64_t w = cfg.width, L = cfg.context_length;
  if (cfg.embed_cls) cls_emb = register_parameter("cls_emb", Tensor::zeros({w}, dt));
  positional_embedding = register_parameter("positional_embedding", Tensor::zeros({L + (cfg.embed_cls ? 1 : 0), w}, dt));
  text_projection = register_parameter("text_projection", Tensor::zeros({w, c.embed_dim}, dt));
  token_embedding = register_module("token_embedding", std::make_shared<nn::Container>());
  token_embedding_weight = token_embedding->param("weight", Tensor::zeros({cfg.vocab_size, w}, dt));
  transformer = register_module("transformer", std::make_shared<Transformer>(w, cfg.layers, cfg.heads, cfg.mlp_ratio, dt));
  ln_final = register_module("ln_final", std::make_shared<nn::LayerNorm>(w, dt));
}

int64_t TextTransformer::used_length(const std::vector<int32_t>& tok, int64_t rows) const {
  const int64_t L = cfg.context_length;
  int64_t used = 0;  // one past the last non-pad token over all rows
  for (int64_t b = 0; b < rows; ++b)
    for (int64_t j = L - 1; j >= used; --j)
      if (tok[b * L + j] != cfg.pad_id) {
        used = j + 1;
        break;
      }
  return std::min(L, std::max<int64_t>(used + 1, 2));  // the decoder needs one position
}

std::vector<int64_t> argmax_positions(const std::vector<int32_t>& tok, int64_t rows, int64_t L) {
  std::vector<int64_t> at(rows, 0);
  for (int64_t b = 0; b < rows; ++b) {
    const int32_t* t = tok.data() + b * L;
    for (int64_t j = 1; j < L; ++j)
      if (t[j] > t[at[b]]) at[b] = j;
  }
  return at;
}

Tensor TextTransformer::attention_mask(const Tensor& text) const {
  COCA_CHECK(text.dim() == 2 && text.size(1) == cfg.context_length, "attention_mask: tokens ", text.describe(),
             " must be [B, ", cfg.context_length, "]");
  return attention_mask(text.to_vector<int32_t>(), text.size(0), cfg.context_length, text.device());
}

Tensor TextTransformer::attention_mask(const std::vector<int32_t>& tok, int64_t B, int64_t T, Device device) const {
  const int64_t L = cfg.context_length, n = T + 1;
  const double neg_inf = -std::numeric_limits<double>::infinity();
  std::vector<double> m(B * n * n, 0.0);
  for (int64_t b = 0; b < B; ++b) {
    double* mb = m.data() + b * n * n;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = i + 1; j < n; ++j) mb[i * n + j] = neg_inf;  // causal
    double* cls_row = mb + T * n;
    const int32_t* t = tok.data() + b * L;
    for (int64_t j = 0; j < T; ++j) {
      const bool visible = cfg.correct_cls_mask ? t[j] != cfg.pad_id : j == 0 || t[j - 1] != cfg.pad_id;
      cls_row[j] = visible ? 0.0 : neg_inf;
    }
    // The CLS token itself sits at position L whatever T is; OpenCLIP's shifted rule lets it
    // see itself only when the row's last position holds a token.
    const bool self = cfg.correct_cls_mask || t[L - 1] != cfg.pad_id;
    cls_row[T] = self ? 0.0 : neg_inf;
  }
  Tensor mask = Tensor::from_vector(m, {B, 1, n, n});
  return mask.to(dtype).to(device);
}

TextEncoding TextTransformer::forward(const Tensor& text, bool trim_padding) const {
  COCA_CHECK(text.dim() == 2 && text.dtype() == DType::i32 && text.size(1) == cfg.context_length, "text: tokens ",
             text.describe(), " must be i32 [B, ", cfg.context_length, "]");
  const int64_t B = text.size(0), L = cfg.context_length, w = cfg.width;
  const std::vector<int32_t> tok = text.to_vector<int32_t>();  // the mask is built on the host
  if (!cfg.embed_cls) {  // CLIP: causal mask, pooled at the end-of-text token after ln_final
    const std::vector<int64_t> end = argmax_positions(tok, B, L);
    const int64_t T = trim_padding ? *std::max_element(end.begin(), end.end()) + 1 : L;
    const Device dev = token_embedding_weight.device();
    Tensor x = embedding(token_embedding_weight, (T < L ? text.slice(1, 0, T).contiguous() : text).to(dev));  // [B, T, w]
    x = add(x, T < L ? positional_embedding.slice(0, 0, T) : positional_embedding);
    AttentionMask causal;
    causal.causal = true;
    x = transformer->forward(x, causal);
    std::vector<int32_t> rows(B);
    for (int64_t b = 0; b < B; ++b) rows[b] = static_cast<int32_t>(b * T + end[b]);
    Tensor index = Tensor::from_vector(rows, {B}).to(dev);
    Tensor pooled = embedding(x.reshape({B * T, w}), index);  // [B, w]; ln_final is per row
    TextEncoding out;
    out.features = l2_normalize(matmul(ln_final->forward(pooled), text_projection));
    out.tokens = x;
    return out;
  }
  const int64_t T = trim_padding ? used_length(tok, B) : L;
  const Device dev = token_embedding_weight.device();  // text may be on the host
  Tensor x = embedding(token_embedding_weight, (T < L ? text.slice(1, 0, T).contiguous() : text).to(dev));  // [B, T, w]
  x = concat({x, cls_emb.reshape({1, 1, w}).expand({B, 1, w})}, 1);
  Tensor pos = T < L ? concat({positional_embedding.slice(0, 0, T), positional_embedding.slice(0, L, L + 1)}, 0)
                     : positional_embedding;
  x = add(x, pos);  // [B, T+1, w]
  AttentionMask mask;
  mask.additive = attention_mask(tok, B, T, dev);
  x = transformer->forward(x, mask);
  TextEncoding out;
  out.features = l2_normalize(matmul(ln_final->forward(x.select(1, T)), text_projection));
  out.tokens = x.slice(1, 0, T);
  return out;
}

MultimodalDecoder::MultimodalDecoder(const CocaConfig& c, DType dt) : cfg(c.multimodal) {
  const int64_t w = cfg.width;
  text_projection = register_parameter("text_projection", Tensor::zeros({w, cfg.vocab_size}, dt));
  resblocks = register_module("resblocks", std::make_shared<nn::ModuleList<Block>>());
  cross_attn = register_module("cross_attn", std::make_shared<nn::ModuleList<Block>>());
  for (int64_t i = 0; i < cfg.layers; ++i) {
    resblocks->push_back(std::make_shared<Block>(w, cfg.heads, cfg.mlp_ratio, false, dt));
    cross_attn->push_back(std::make_shared<Block>(w, cfg.heads, cfg.mlp_ratio, true, dt));
  }
  ln_final = register_module("ln_final", std::make_shared<nn::LayerNorm>(w, dt));
}

Tensor MultimodalDecoder::forward(const Tensor& tokens, const Tensor& image_tokens) const {
  return logits(hidden(tokens, image_tokens));  // [B, T, V]
}

Tensor MultimodalDecoder::logits(const Tensor& hidden) const { return matmul(ln_final->forward(hidden), text_projection); }

Tensor MultimodalDecoder::hidden(const Tensor& tokens, const Tensor& image_tokens) const {
  AttentionMask causal;
  causal.causal = true;
  Tensor x = tokens;
  for (int64_t i = 0; i < cfg.layers; ++i) {
    x = run_block(*(*resblocks)[i], x, Tensor(), causal, grad_checkpointing);
    x = run_block(*(*cross_attn)[i], x, image_tokens, {}, grad_checkpointing);
  }
  return x;  // [B, T, w]
}

CoCa::CoCa(const CocaConfig& cfg, DType dtype, bool initialize_weights) : cfg_(cfg), dtype_(dtype) {
  COCA_CHECK(dtype == DType::f32 || dtype == DType::f64, "CoCa: parameters must be f32 or f64, not ", dtype_name(dtype));
  // Registration follows OpenCLIP's state_dict order for each family.
  if (!cfg.clip) {  // CoCa
    logit_scale = register_parameter("logit_scale", Tensor::zeros({}, dtype));
    text = register_module("text", std::make_shared<TextTransformer>(cfg, dtype));
    visual = register_module("visual", std::make_shared<VisionTransformer>(cfg, dtype));
    text_decoder = register_module("text_decoder", std::make_shared<MultimodalDecoder>(cfg, dtype));
  } else if (cfg.custom_text) {  // OpenCLIP's CustomTextCLIP
    logit_scale = register_parameter("logit_scale", Tensor::zeros({}, dtype));
    visual = register_module("visual", std::make_shared<VisionTransformer>(cfg, dtype));
    text = register_module("text", std::make_shared<TextTransformer>(cfg, dtype));
  } else {  // OpenCLIP's CLIP: the text tower's members are the model's own
    text = std::make_shared<TextTransformer>(cfg, dtype);
    register_parameter("positional_embedding", text->positional_embedding);
    register_parameter("text_projection", text->text_projection);
    logit_scale = register_parameter("logit_scale", Tensor::zeros({}, dtype));
    visual = register_module("visual", std::make_shared<VisionTransformer>(cfg, dtype));
    register_module("transformer", text->transformer);
    register_module("token_embedding", text->token_embedding);
    register_module("ln_final", text->ln_final);
  }
  if (initialize_weights) initialize(0);
}

void CoCa::set_grad_checkpointing(bool on) {
  visual->transformer->grad_checkpointing = on;
  text->transformer->grad_checkpointing = on;
  if (text_decoder) text_decoder->grad_checkpointing = on;
}

void CoCa::clamp_logit_scale() {
  const double hi = std::log(100.0);
  if (logit_scale.device() != Device::CPU) {  // on the device, without waiting for it
    NoGradGuard no_grad;
    // A NaN stays NaN here (the host path below replaces it); the trainer never applies a step
    // whose gradient norm is not finite, so none reaches logit_scale.
    logit_scale.copy_(clamp(logit_scale, 0.0, hi));
    return;
  }
  const double v = logit_scale.item();
  if (v < 0.0 || v > hi || std::isnan(v)) logit_scale.fill_(std::isnan(v) ? hi : std::min(std::max(v, 0.0), hi));
}

namespace {

// Rows `rows` of x [B, ...] as a new [n, ...] tensor (gradient flows back to x).
Tensor gather_rows(const Tensor& x, const std::vector<int32_t>& rows) {
  std::vector<int64_t> shape = x.shape();
  const int64_t B = shape[0], inner = x.numel() / std::max<int64_t>(B, 1);
  Tensor index = Tensor::from_vector(rows, {static_cast<int64_t>(rows.size())}).to(x.device());
  shape[0] = static_cast<int64_t>(rows.size());
  return embedding(x.reshape({B, inner}), index).reshape(shape);
}

}  // namespace

CocaOutput CoCa::forward(const Tensor& images, const Tensor& tokens, bool trim_padding) const {
  COCA_CHECK(images.defined() && tokens.defined() && images.size(0) == tokens.size(0), "CoCa: images ",
             images.describe(), " and tokens ", tokens.describe(), " must have the same batch size");
  ImageEncoding img = visual->forward(images.dtype() == dtype_ ? images : images.to(dtype_));
  CocaOutput out;
  out.image_features = img.features;
  out.logit_scale = logit_scale;
  if (!text_decoder) {
    out.captions = false;
    out.text_features = text->forward(tokens, trim_padding).features;
    return out;
  }
  if (!trim_padding) {
    TextEncoding txt = text->forward(tokens);
    out.text_features = txt.features;
    out.caption_logits = text_decoder->forward(txt.tokens.slice(1, 0, cfg_.text.context_length - 1), img.tokens);
    return out;
  }
  COCA_CHECK(tokens.dim() == 2 && tokens.dtype() == DType::i32 && tokens.size(1) == cfg_.text.context_length,
             "text: tokens ", tokens.describe(), " must be i32 [B, ", cfg_.text.context_length, "]");
  const int64_t B = tokens.size(0), L = cfg_.text.context_length;
  const int32_t pad = static_cast<int32_t>(cfg_.text.pad_id);
  const std::vector<int32_t> tok = tokens.to_vector<int32_t>();
  // Rows by caption length (one past the last token), then cut into buckets of equal size.
  std::vector<int64_t> length(B, 0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = L - 1; j >= 0; --j)
      if (tok[b * L + j] != pad) {
        length[b] = j + 1;
        break;
      }
  const int64_t buckets = std::max<int64_t>(1, std::min(text_buckets, B / std::max<int64_t>(min_bucket_rows, 1)));
  std::vector<int32_t> order(B);
  std::iota(order.begin(), order.end(), 0);
  if (buckets > 1)
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return length[a] < length[b]; });
  std::vector<Tensor> features, logits;
  std::vector<int32_t> targets;
  for (int64_t g = 0; g < buckets; ++g) {
    const std::vector<int32_t> rows(order.begin() + g * B / buckets, order.begin() + (g + 1) * B / buckets);
    const int64_t n = static_cast<int64_t>(rows.size());
    std::vector<int32_t> sub(n * L);
    for (int64_t r = 0; r < n; ++r) std::copy_n(tok.begin() + rows[r] * L, L, sub.begin() + r * L);
    TextEncoding txt = text->forward(Tensor::from_vector(sub, {n, L}), true);  // uploads what it runs
    const int64_t P = txt.tokens.size(1) - 1;  // decoder positions: the targets are tokens 1..P
    Tensor h = text_decoder->hidden(txt.tokens.slice(1, 0, P), buckets == 1 ? img.tokens : gather_rows(img.tokens, rows));
    std::vector<int32_t> keep;  // positions (r, p) whose target is a token
    for (int64_t r = 0; r < n; ++r)
      for (int64_t p = 0; p < P; ++p)
        if (sub[r * L + p + 1] != pad) {
          keep.push_back(static_cast<int32_t>(r * P + p));
          targets.push_back(sub[r * L + p + 1]);
        }
    if (!keep.empty()) logits.push_back(text_decoder->logits(gather_rows(h.reshape({n * P, h.size(2)}), keep)));
    features.push_back(txt.features);
  }
  // Features back in the batch's row order.
  std::vector<int32_t> where(B);
  for (int64_t i = 0; i < B; ++i) where[order[i]] = static_cast<int32_t>(i);
  out.text_features = buckets == 1 ? features[0] : gather_rows(concat(features, 0), where);
  const int64_t N = static_cast<int64_t>(targets.size());
  if (N > 0) {
    out.caption_logits = logits.size() == 1 ? logits[0] : concat(logits, 0);  // [N, V]
    out.caption_targets = Tensor::from_vector(targets, {N}).to(device());
  }
  return out;
}

}  // namespace coca
