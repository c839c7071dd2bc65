#pragma once
// CoCa model configuration in OpenCLIP's model-config JSON schema (spec section 1).
#include <string>

#include <nlohmann/json.hpp>

namespace coca {

struct VisionConfig {
  int64_t image_size = 0, patch_size = 0, width = 0, layers = 0;
  int64_t head_width = 64;
  double mlp_ratio = 4.0;
  bool attentional_pool = false;
  int64_t attn_pooler_queries = 256, attn_pooler_heads = 8;
  int64_t heads() const { return width / head_width; }
  int64_t grid() const { return image_size / patch_size; }
};

struct TextConfig {
  int64_t context_length = 0, vocab_size = 0, width = 0, heads = 0, layers = 0;
  double mlp_ratio = 4.0;
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
  int64_t embed_dim = 0;
  VisionConfig vision;
  TextConfig text;
  MultimodalConfig multimodal;

  // Missing required keys and invalid values throw naming the key; unknown keys are reported
  // through `warn` (default: stderr) and ignored.
  static CocaConfig from_json(const nlohmann::json& j, const std::string& source);
  static CocaConfig from_file(const std::string& path);
  nlohmann::json to_json() const;
};

// Resolves a model name ("coca_tiny") to launch/configs/<name>.json under the source tree,
// or uses the argument as a path when it names an existing file.
std::string find_model_config(const std::string& name_or_path);

}  // namespace coca
