#pragma once
// Model weights as OpenCLIP-named safetensors (spec section 10).
#include <string>
#include <vector>

#include "coca/nn/module.h"
#include "coca/tensor/safetensors.h"

namespace coca {

void save_weights(const nn::Module& model, const std::string& path);
// The tensors of a weight file, whichever kind it is (told by its content, not its name):
// safetensors, or a PyTorch zip checkpoint (.bin state dict, or a training checkpoint .pt whose
// "state_dict" is taken; see torch_archive.h). A "module." prefix on every name is removed.
// With `model`, a PyTorch checkpoint's names and shapes are checked against it (the same error
// as load_weights) before any tensor's bytes are read, and its size is bounded by the model's.
NamedTensors read_weight_file(const std::string& path, const nn::Module* model = nullptr);
// Copies every tensor into the model's parameters (converting dtype). Any missing, extra or
// wrongly shaped tensor is an error: one line naming the first few (describe_mismatch). When
// there are more than it names and COCA_LIST_MISMATCH=1 is in the environment, the complete
// list (list_mismatch) is written to stderr before it.
// The causal-mask buffers text.attn_mask, text_decoder.attn_mask and (CLIP) attn_mask are ignored if present.
void load_weights(nn::Module& model, const std::string& path);
void load_weights(nn::Module& model, const NamedTensors& tensors, const std::string& source);

// The body of a one-line "file does not match the model" error: at most `max_names` offending
// names (shared fairly among the three kinds, each prefixed by its kind), then
// "... and N more (M missing, K unexpected, J wrongly shaped)" counting those not named. A
// wholly wrong config mismatches hundreds of tensors; the line must stay readable.
std::string describe_mismatch(const std::vector<std::string>& missing, const std::vector<std::string>& unexpected,
                              const std::vector<std::string>& wrongly_shaped, size_t max_names = 8);
inline constexpr size_t kMismatchNames = 8;
// Every offending name, one per line ("  missing NAME"), missing first, then unexpected, then
// wrongly shaped.
std::string list_mismatch(const std::vector<std::string>& missing, const std::vector<std::string>& unexpected,
                          const std::vector<std::string>& wrongly_shaped);

}  // namespace coca
