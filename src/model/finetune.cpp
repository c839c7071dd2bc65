#include "coca/model/finetune.h"

namespace coca {

namespace {

std::vector<std::vector<std::string>> tower_groups(const std::vector<std::string>& first, int64_t layers,
                                                   const std::string& last_norm, const std::string& projection) {
  std::vector<std::vector<std::string>> groups{first};
  for (int64_t i = 0; i + 1 < layers; ++i) groups.push_back({str_cat("transformer.resblocks.", i)});
  if (layers > 0) groups.push_back({str_cat("transformer.resblocks.", layers - 1), last_norm});
  else groups.push_back({last_norm});
  groups.push_back({projection});
  return groups;
}

bool under(const std::string& name, const std::string& prefix) {
  return name == prefix || (name.size() > prefix.size() && name.compare(0, prefix.size(), prefix) == 0 &&
                            name[prefix.size()] == '.');
}

void lock_tower(const nn::Module& tower, const std::vector<std::vector<std::string>>& groups, int64_t unlocked,
                const std::string& flag) {
  const int64_t n = static_cast<int64_t>(groups.size());
  COCA_CHECK(unlocked >= 0 && unlocked <= n, flag, " must be between 0 and ", n, " (the tower's layer groups), got ",
             unlocked);
  for (auto& [name, p] : tower.named_parameters()) {
    bool trainable = false;
    for (int64_t g = n - unlocked; g < n && !trainable; ++g)
      for (const std::string& prefix : groups[g]) trainable = trainable || under(name, prefix);
    Tensor t = p;
    t.set_requires_grad(trainable);
  }
}

}  // namespace

std::vector<std::vector<std::string>> image_lock_groups(const CocaConfig& cfg) {
  return tower_groups({"conv1", "class_embedding", "positional_embedding", "ln_pre"}, cfg.vision.layers, "ln_post",
                      "proj");
}

std::vector<std::vector<std::string>> text_lock_groups(const CocaConfig& cfg) {
  return tower_groups({"token_embedding", "positional_embedding"}, cfg.text.layers, "ln_final", "text_projection");
}

void lock_image_tower(CoCa& model, int64_t unlocked, const std::string& flag) {
  lock_tower(*model.visual, image_lock_groups(model.config()), unlocked, flag);
}

void lock_text_tower(CoCa& model, int64_t unlocked, const std::string& flag) {
  lock_tower(*model.text, text_lock_groups(model.config()), unlocked, flag);
}

}  // namespace coca
