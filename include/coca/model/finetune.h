#pragma once
// Freezing parts of CoCa for fine-tuning, with OpenCLIP's grouping (--lock-image,
// --lock-text). A frozen parameter has requires_grad off: no gradient is computed for it, and
// the trainer leaves it out of the optimizer and the gradient all-reduce.
#include <string>
#include <vector>

#include "coca/model/coca.h"

namespace coca {

// The image tower's layer groups, first to last, as OpenCLIP's VisionTransformer.lock forms
// them: [conv1, class_embedding, positional_embedding, ln_pre], then resblocks 0 .. L-2 one
// group each, [resblock L-1, ln_post], [proj]: L + 2 groups. attn_pool is in no group.
// Entries are parameter-name prefixes under "visual.".
std::vector<std::vector<std::string>> image_lock_groups(const CocaConfig& cfg);
// The text tower's, as OpenCLIP's lock_text_transformer: [token_embedding,
// positional_embedding], resblocks 0 .. L-2, [resblock L-1, ln_final], [text_projection]:
// L + 2 groups. cls_emb is in no group. Prefixes under "text.".
std::vector<std::vector<std::string>> text_lock_groups(const CocaConfig& cfg);

// Freezes every parameter of visual.* (text.*), then unfreezes those of the last `unlocked`
// groups (0: all frozen). Throws naming `flag` when `unlocked` is negative or more than the
// number of groups.
void lock_image_tower(CoCa& model, int64_t unlocked, const std::string& flag = "--lock-image-unlocked-groups");
void lock_text_tower(CoCa& model, int64_t unlocked, const std::string& flag = "--lock-text-unlocked-layers");

}  // namespace coca
