#pragma once
// CoCa (spec sections 2-4): ViT image tower with an attentional pooler, unimodal text tower
// with a CLS token at the end, multimodal decoder with cross-attention. The same class holds
// OpenCLIP's other towers: the class-token image pooling of CLIP and coca_base, and CLIP's
// text tower (no CLS token, pooled at the end-of-text token) without a decoder.
#include "coca/model/config.h"
#include "coca/nn/layers.h"
#include "coca/tensor/random.h"

namespace coca {

using Block = nn::ResidualAttentionBlock;

class Transformer : public nn::Module {
 public:
  Transformer(int64_t width, int64_t layers, int64_t heads, double mlp_ratio, DType dtype);
  Tensor forward(Tensor x, const AttentionMask& mask) const;
  std::shared_ptr<nn::ModuleList<Block>> resblocks;
  bool grad_checkpointing = false;  // recompute each block in backward (autograd/checkpoint.h)
};

class AttentionalPooler : public nn::Module {
 public:
  AttentionalPooler(int64_t dim, int64_t kdim, int64_t heads, int64_t queries, DType dtype);
  Tensor forward(const Tensor& x) const;  // x [B, N, kdim] -> [B, queries, dim]
  Tensor query;                           // [queries, dim]
  std::shared_ptr<nn::MultiheadAttention> attn;
  std::shared_ptr<nn::LayerNorm> ln_q, ln_k;
};

struct ImageEncoding {
  Tensor features;  // [B, E], L2-normalised
  // For the decoder: [B, queries-1, E] from the attentional pooler, or the patch tokens after
  // ln_post [B, N-1, width] without it. Undefined when `output_tokens` is off (CLIP).
  Tensor tokens;
};

class VisionTransformer : public nn::Module {
 public:
  VisionTransformer(const CocaConfig& cfg, DType dtype);
  ImageEncoding forward(const Tensor& images) const;  // images [B, 3, H, W]
  // The tokens that enter the transformer: patch embedding, class token, positions, patch
  // dropout (training only), ln_pre. [B, 1 + kept patches, width].
  Tensor embed(const Tensor& images) const;
  // FLIP patch dropout: while `training`, each sample keeps max(1, int(P * (1 - patch_dropout)))
  // of its P patch tokens (a random subset drawn from *patch_dropout_gen, in grid order) plus
  // the class token. Starts at cfg.patch_dropout; off outside training.
  double patch_dropout = 0.0;
  bool training = false;
  bool output_tokens = true;  // off for a CLIP: nothing reads the tokens
  Generator* patch_dropout_gen = nullptr;  // required when training with patch_dropout > 0
  VisionConfig cfg;
  int64_t embed_dim;
  std::shared_ptr<nn::Container> conv1;  // holds "weight" [width, 3, p, p]
  Tensor conv1_weight, class_embedding, positional_embedding, proj;
  std::shared_ptr<nn::LayerNorm> ln_pre, ln_post;
  std::shared_ptr<Transformer> transformer;
  std::shared_ptr<AttentionalPooler> attn_pool;  // null without cfg.attentional_pool
};

struct TextEncoding {
  Tensor features;  // [B, E], L2-normalised
  Tensor tokens;    // [B, T, w]: per-token outputs without ln_final (T = L unless trimmed)
};

// Where a tower without a CLS token pools each row: the first position of its largest token id
// (the end-of-text token; OpenCLIP's "argmax"). tokens is B rows of L.
std::vector<int64_t> argmax_positions(const std::vector<int32_t>& tokens, int64_t rows, int64_t L);

class TextTransformer : public nn::Module {
 public:
  TextTransformer(const CocaConfig& cfg, DType dtype);
  // text i32 [B, L]. With `trim_padding` the tower runs on the first T = used_length(text)
  // positions plus the CLS token (which keeps position L's embedding): the features equal the
  // untrimmed ones (the positions dropped are padding that nothing kept attends to) and
  // tokens is [B, T, w]. Outputs at the dropped positions are what trimming saves. Without a
  // CLS token (cfg.embed_cls false) T is one past the last row's end-of-text position and the
  // mask is causal only.
  TextEncoding forward(const Tensor& text, bool trim_padding = false) const;
  // One past the last non-pad token of any row, plus the first padding position (OpenCLIP's
  // shifted CLS mask lets the CLS token see it), at most L; at least 2.
  int64_t used_length(const std::vector<int32_t>& tokens, int64_t rows) const;
  // The additive [B, 1, L+1, L+1] mask of spec section 3 (causal + CLS-row padding).
  Tensor attention_mask(const Tensor& text) const;
  // The same mask for the first `used` positions and the CLS token: [B, 1, used+1, used+1].
  Tensor attention_mask(const std::vector<int32_t>& tokens, int64_t rows, int64_t used, Device device) const;
  TextConfig cfg;
  DType dtype;
  std::shared_ptr<nn::Container> token_embedding;  // holds "weight" [V, w]
  Tensor token_embedding_weight, cls_emb, positional_embedding, text_projection;  // cls_emb: with embed_cls
  std::shared_ptr<Transformer> transformer;
  std::shared_ptr<nn::LayerNorm> ln_final;
};

class MultimodalDecoder : public nn::Module {
 public:
  MultimodalDecoder(const CocaConfig& cfg, DType dtype);
  // tokens [B, T, w], image_tokens [B, Q, w] -> logits [B, T, V]
  Tensor forward(const Tensor& tokens, const Tensor& image_tokens) const;
  // The two halves of forward: the blocks ([B, T, w], before ln_final), then ln_final and the
  // vocabulary projection of any [..., w] rows.
  Tensor hidden(const Tensor& tokens, const Tensor& image_tokens) const;
  Tensor logits(const Tensor& hidden) const;
  MultimodalConfig cfg;
  std::shared_ptr<nn::ModuleList<Block>> resblocks, cross_attn;
  std::shared_ptr<nn::LayerNorm> ln_final;
  Tensor text_projection;  // [w, V]
  bool grad_checkpointing = false;
};

struct CocaOutput {
  Tensor image_features, text_features;  // [B, E]
  bool captions = true;  // false for a model without a decoder (CLIP): no caption loss
  // [B, L-1, V]; from a trimmed forward [N, V]: only the N positions whose target is a token,
  // with those targets in caption_targets (i32 [N]). caption_loss takes either.
  Tensor caption_logits;
  Tensor caption_targets;
  Tensor logit_scale;  // the parameter (use exp())
};

class CoCa : public nn::Module {
 public:
  // `initialize_weights` false leaves every parameter zero, for weights that are loaded next
  // (drawing ViT-L-14's 428M initial values takes longer than reading them).
  explicit CoCa(const CocaConfig& cfg, DType dtype = DType::f32, bool initialize_weights = true);
  // `trim_padding` (what training runs): the rows go through the text tower and the decoder
  // in up to `text_buckets` groups of similar caption length (at least `min_bucket_rows` rows
  // each), each group trimmed to its longest caption (TextTransformer::forward), and the
  // vocabulary projection runs only where the target is a token (CocaOutput). Every row's
  // computation is its own, so features, losses and gradients equal the full-length forward's;
  // only the work shrinks.
  CocaOutput forward(const Tensor& images, const Tensor& text, bool trim_padding = false) const;
  int64_t text_buckets = 4;
  int64_t min_bucket_rows = 16;
  const CocaConfig& config() const { return cfg_; }
  DType dtype() const { return dtype_; }
  // Spec section 8, deterministic given the seed. The constructor initialises with seed 0.
  void initialize(uint64_t seed);
  // Keeps logit_scale in [0, ln 100]; the trainer calls it after every optimizer step.
  void clamp_logit_scale();
  // Recompute every residual block (image, text, decoder) in backward instead of keeping its
  // activations: less memory, one more forward per block, identical gradients.
  void set_grad_checkpointing(bool on);
  // Training mode: only patch dropout depends on it (the model has no other dropout).
  void set_training(bool on) { visual->training = on; }
  // Where the parameters live (Module::to moves them); inputs must be there too.
  Device device() const { return logit_scale.device(); }
  // false for a CLIP (cfg.clip): text_decoder is null and the loss is contrastive only.
  bool has_decoder() const { return text_decoder != nullptr; }

  std::shared_ptr<VisionTransformer> visual;
  // A CLIP without custom_text registers the text tower's members at the top level, as
  // OpenCLIP's CLIP does; `text` is the same tower either way.
  std::shared_ptr<TextTransformer> text;
  std::shared_ptr<MultimodalDecoder> text_decoder;
  Tensor logit_scale;

 private:
  CocaConfig cfg_;
  DType dtype_;
};

}  // namespace coca
