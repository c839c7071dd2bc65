#pragma once
// CoCa model configuration in OpenCLIP's model-config JSON schema (spec section 1).
#include <array>
#include <string>

#include <nlohmann/json.hpp>

namespace coca {

struct VisionConfig {
  int64_t image_size = 0, patch_size = 0, width = 0, layers = 0;
  int64_t head_width = 64;
  double mlp_ratio = 4.0;
  // true: the attentional pooler (OpenCLIP's CoCa); false: the class token after ln_post is
  // pooled and the patch tokens go to the decoder (CLIP, coca_base).
  bool attentional_pool = false;
  int64_t attn_pooler_queries = 256, attn_pooler_heads = 8;
  double patch_dropout = 0.0;  // FLIP: share of patch tokens dropped in training, [0, 1)
  int64_t heads() const { return width / head_width; }
  int64_t grid() const { return image_size / patch_size; }
};

struct TextConfig {
  int64_t context_length = 0, vocab_size = 0, width = 0, heads = 0, layers = 0;
  double mlp_ratio = 4.0;
  // true: a CLS token after the text, pooled (CoCa); false: no CLS token, a causal mask only,
  // and the features pooled at each row's largest token id, the end of text (OpenCLIP's
  // "argmax" pooling, CLIP's text tower).
  bool embed_cls = true;
  int64_t pad_id = 0;
  bool correct_cls_mask = false;
};

struct MultimodalConfig {
  int64_t context_length = 0, vocab_size = 0, width = 0, heads = 0, layers = 0;
  double mlp_ratio = 4.0;
};

struct CocaConfig {
  std::string name;  // file stem or "inline"
  // A config without "multimodal_cfg" is OpenCLIP's CLIP: no decoder, the contrastive loss
  // only. Its text tower's tensors sit at the top level ("transformer.resblocks.0...",
  // "token_embedding.weight") unless "custom_text" is true ("text.transformer...").
  bool clip = false;
  bool custom_text = true;
  int64_t embed_dim = 0;
  VisionConfig vision;
  TextConfig text;
  MultimodalConfig multimodal;
  // Image normalisation, (v / 255 - mean) / std per RGB channel: OpenCLIP's
  // "preprocess_cfg": {"mean": [...], "std": [...]}; CLIP's constants by default.
  std::array<double, 3> image_mean{0.48145466, 0.4578275, 0.40821073};
  std::array<double, 3> image_std{0.26862954, 0.26130258, 0.27577711};
  // logit_scale at initialisation (the log of the softmax inverse temperature): OpenCLIP's
  // "init_logit_scale" model argument, log(1 / 0.07) by default.
  double init_logit_scale = 2.6592600369327779;

  // Missing required keys and invalid values throw naming the key; unknown keys are reported
  // through `warn` (default: stderr) and ignored.
  static CocaConfig from_json(const nlohmann::json& j, const std::string& source);
  static CocaConfig from_file(const std::string& path);
  nlohmann::json to_json() const;
};

// Three numbers for --image-mean / --image-std: "R,G,B" or "R G B" (OpenCLIP takes them as
// separate words). Throws naming `flag`; std must be positive (`positive`).
std::array<double, 3> parse_rgb_triple(const std::string& text, const std::string& flag, bool positive);

// Resolves a model name ("coca_tiny") to launch/configs/<name>.json under the source tree,
// or uses the argument as a path when it names an existing file.
std::string find_model_config(const std::string& name_or_path);

}  // namespace coca
