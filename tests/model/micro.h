#pragma once
// A micro CoCa config for float64 gradient checks: 2 layers, width 16, 2 heads everywhere.
#include <nlohmann/json.hpp>

#include "coca/model/config.h"
#include "coca/tensor/tensor.h"

namespace coca::test {

inline CocaConfig micro_config(bool correct_cls_mask = false, int64_t vision_width = 16) {
  nlohmann::json j = {
      {"embed_dim", 16},
      {"vision_cfg",
       {{"image_size", 16}, {"patch_size", 8}, {"width", vision_width}, {"layers", 2}, {"head_width", 8},
        {"attentional_pool", true}, {"attn_pooler_queries", 5}, {"attn_pooler_heads", 2}}},
      {"text_cfg",
       {{"context_length", 7}, {"vocab_size", 50}, {"width", 16}, {"heads", 2}, {"layers", 2},
        {"correct_cls_mask", correct_cls_mask}}},
      {"multimodal_cfg", {{"context_length", 7}, {"vocab_size", 50}, {"width", 16}, {"heads", 2}, {"layers", 2}}}};
  return CocaConfig::from_json(j, "micro");
}

// OpenCLIP's CLIP layout at the micro size: no decoder, class-token image pooling (no pooler),
// end-of-text text pooling, embed_dim 12 below the widths; the text tower at the top level of the
// names unless `custom_text`; `attentional_pool` adds a pooler (whose output is embed_dim wide).
inline CocaConfig micro_clip_config(bool custom_text = false, bool attentional_pool = false) {
  nlohmann::json j = {
      {"embed_dim", 12},
      {"vision_cfg", {{"image_size", 16}, {"patch_size", 8}, {"width", 16}, {"layers", 2}, {"head_width", 8}}},
      {"text_cfg", {{"context_length", 7}, {"vocab_size", 50}, {"width", 16}, {"heads", 2}, {"layers", 2}}}};
  if (custom_text) j["custom_text"] = true;
  if (attentional_pool) {
    j["vision_cfg"]["attentional_pool"] = true;
    j["vision_cfg"]["attn_pooler_queries"] = 3;
    j["vision_cfg"]["attn_pooler_heads"] = 2;
  }
  return CocaConfig::from_json(j, "micro_clip");
}

// Rows: start token, random body, end token, then pad (0). lengths[i] counts start and end.
inline Tensor micro_tokens(const std::vector<int>& lengths, int64_t L, int64_t vocab, Generator& gen) {
  std::vector<int32_t> t(lengths.size() * L, 0);
  for (size_t b = 0; b < lengths.size(); ++b) {
    t[b * L] = static_cast<int32_t>(vocab - 2);
    for (int i = 1; i < lengths[b] - 1; ++i) t[b * L + i] = 1 + static_cast<int32_t>(gen.below(vocab - 3));
    t[b * L + lengths[b] - 1] = static_cast<int32_t>(vocab - 1);
  }
  return Tensor::from_vector(t, {static_cast<int64_t>(lengths.size()), L});
}

}  // namespace coca::test
