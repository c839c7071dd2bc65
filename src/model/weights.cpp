#include "coca/model/weights.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>

#include "coca/autograd/node.h"
#include "coca/tensor/torch_archive.h"

namespace coca {

void save_weights(const nn::Module& model, const std::string& path) {
  NamedTensors out;
  for (auto& [name, t] : model.named_parameters()) out.emplace_back(name, t.dtype() == DType::f32 ? t : t.to(DType::f32));
  save_safetensors(path, out, {{"format", "pt"}});
}

// Buffers OpenCLIP models hold besides their parameters: the causal masks of the text tower and
// the decoder, which we rebuild from the config. Files that carry them (older OpenCLIP versions
// saved them) load with them ignored; any other extra tensor is an error.
const char* const kIgnoredBuffers[] = {"text.attn_mask", "text_decoder.attn_mask"};

void load_weights(nn::Module& model, const NamedTensors& tensors, const std::string& source) {
  std::map<std::string, Tensor> file;
  for (auto& [name, t] : tensors) file[name] = t;
  for (const char* buffer : kIgnoredBuffers) file.erase(buffer);
  std::vector<std::string> missing, wrong, extra;
  auto params = model.named_parameters();
  std::map<std::string, bool> known;
  for (auto& [name, p] : params) {
    known[name] = true;
    auto it = file.find(name);
    if (it == file.end()) missing.push_back(name);
    else if (it->second.shape() != p.shape())
      wrong.push_back(str_cat(name, " (file ", shape_str(it->second.shape()), ", model ", shape_str(p.shape()), ")"));
  }
  for (auto& [name, t] : file)
    if (!known.count(name)) extra.push_back(name);
  if (!missing.empty() || !wrong.empty() || !extra.empty()) {
    // The error is one line naming a few. When it cannot name them all, COCA_LIST_MISMATCH=1
    // writes the complete list to stderr first, one per line (off by default: a wholly wrong
    // config differs in hundreds of tensors, once per rank).
    const size_t total = missing.size() + extra.size() + wrong.size();
    const char* list = std::getenv("COCA_LIST_MISMATCH");
    if (total > kMismatchNames && list && std::strcmp(list, "0") != 0)
      std::fprintf(stderr, "weights %s: all %zu differences from the model config:\n%s", source.c_str(), total,
                   list_mismatch(missing, extra, wrong).c_str());
    const bool listed = total > kMismatchNames && list && std::strcmp(list, "0") != 0;
    throw Error(str_cat("weights ", source, " do not match the model config: ",
                        describe_mismatch(missing, extra, wrong, kMismatchNames),
                        total > kMismatchNames && !listed ? " (COCA_LIST_MISMATCH=1 lists them all)" : ""));
  }
  NoGradGuard no_grad;
  for (auto& [name, p] : params) {
    Tensor src = file[name];
    p.copy_(src.dtype() == p.dtype() ? src : src.to(p.dtype()));
  }
}

std::string describe_mismatch(const std::vector<std::string>& missing, const std::vector<std::string>& unexpected,
                              const std::vector<std::string>& wrongly_shaped, size_t max_names) {
  const std::vector<std::string>* lists[3] = {&missing, &unexpected, &wrongly_shaped};
  const char* kinds[3] = {"missing", "unexpected", "wrongly shaped"};
  // Round-robin over the kinds, so that two missing names are not hidden behind 300 extra ones.
  size_t shown[3] = {0, 0, 0}, total = 0;
  for (bool more = true; more && total < max_names;) {
    more = false;
    for (int k = 0; k < 3 && total < max_names; ++k)
      if (shown[k] < lists[k]->size()) {
        ++shown[k];
        ++total;
        more = true;
      }
  }
  std::string msg;
  for (int k = 0; k < 3; ++k)
    for (size_t i = 0; i < shown[k]; ++i) msg += str_cat(msg.empty() ? "" : ", ", kinds[k], " ", (*lists[k])[i]);
  const size_t rest[3] = {missing.size() - shown[0], unexpected.size() - shown[1], wrongly_shaped.size() - shown[2]};
  if (rest[0] + rest[1] + rest[2] > 0)
    msg += str_cat(", ... and ", rest[0] + rest[1] + rest[2], " more (", rest[0], " missing, ", rest[1],
                   " unexpected, ", rest[2], " wrongly shaped)");
  return msg;
}

std::string list_mismatch(const std::vector<std::string>& missing, const std::vector<std::string>& unexpected,
                          const std::vector<std::string>& wrongly_shaped) {
  std::string out;
  for (auto& n : missing) out += str_cat("  missing ", n, "\n");
  for (auto& n : unexpected) out += str_cat("  unexpected ", n, "\n");
  for (auto& n : wrongly_shaped) out += str_cat("  wrongly shaped ", n, "\n");
  return out;
}

NamedTensors read_weight_file(const std::string& path) {
  NamedTensors tensors;
  if (is_zip_file(path)) {
    tensors = load_torch_state_dict(path);
  } else {
    std::ifstream in(path, std::ios::binary);
    unsigned char head[4] = {0, 0, 0, 0};
    in.read(reinterpret_cast<char*>(head), 4);
    // torch.save's pre-1.6 format: a pickle (protocol 2) of its magic number, a LONG1 of 10 bytes.
    COCA_CHECK(!(in.gcount() == 4 && head[0] == 0x80 && head[1] == 0x02 && head[2] == 0x8a && head[3] == 0x0a),
               "weights ", path, ": PyTorch's legacy (pre-1.6) file format is not supported; re-save it with "
               "torch.save from torch >= 1.6 or as safetensors");
    tensors = load_safetensors(path);
  }
  // DistributedDataParallel prefixes every name with "module.".
  const std::string prefix = "module.";
  bool prefixed = !tensors.empty();
  for (auto& [name, t] : tensors) prefixed = prefixed && name.starts_with(prefix);
  if (prefixed)
    for (auto& [name, t] : tensors) name.erase(0, prefix.size());
  return tensors;
}

void load_weights(nn::Module& model, const std::string& path) { load_weights(model, read_weight_file(path), path); }

}  // namespace coca
