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
// the decoder (a CLIP's text mask is "attn_mask"), which we rebuild from the config. Files that
// carry them (older OpenCLIP versions saved them) load with them ignored; any other extra tensor
// is an error.
constexpr const char* kIgnoredBuffers[] = {"text.attn_mask", "text_decoder.attn_mask", "attn_mask"};

namespace {

// DistributedDataParallel prefixes every name with "module.": the length to drop (0 or 7).
template <typename Named>
size_t ddp_prefix(const Named& named) {
  const std::string prefix = "module.";
  bool prefixed = !named.empty();
  for (auto& [name, t] : named) prefixed = prefixed && name.starts_with(prefix);
  return prefixed ? prefix.size() : 0;
}

bool ignored_buffer(const std::string& name) {
  for (const char* buffer : kIgnoredBuffers)
    if (name == buffer) return true;
  return false;
}

// Throws the one-line mismatch error when the file's names and shapes are not the model's.
void check_names_and_shapes(const nn::Module& model, const std::map<std::string, Shape>& file,
                            const std::string& source) {
  std::vector<std::string> missing, wrong, extra;
  auto params = model.named_parameters();
  std::map<std::string, bool> known;
  for (auto& [name, p] : params) {
    known[name] = true;
    auto it = file.find(name);
    if (it == file.end()) missing.push_back(name);
    else if (it->second != p.shape())
      wrong.push_back(str_cat(name, " (file ", shape_str(it->second), ", model ", shape_str(p.shape()), ")"));
  }
  for (auto& [name, shape] : file)
    if (!known.count(name) && !ignored_buffer(name)) extra.push_back(name);
  if (missing.empty() && wrong.empty() && extra.empty()) return;
  // The error is one line naming a few. When it cannot name them all, COCA_LIST_MISMATCH=1
  // writes the complete list to stderr first, one per line (off by default: a wholly wrong
  // config differs in hundreds of tensors, once per rank).
  const size_t total = missing.size() + extra.size() + wrong.size();
  const char* list = std::getenv("COCA_LIST_MISMATCH");
  const bool listed = total > kMismatchNames && list && std::strcmp(list, "0") != 0;
  if (listed)
    std::fprintf(stderr, "weights %s: all %zu differences from the model config:\n%s", source.c_str(), total,
                 list_mismatch(missing, extra, wrong).c_str());
  throw Error(str_cat("weights ", source, " do not match the model config: ",
                      describe_mismatch(missing, extra, wrong, kMismatchNames),
                      total > kMismatchNames && !listed ? " (COCA_LIST_MISMATCH=1 lists them all)" : ""));
}

}  // namespace

void load_weights(nn::Module& model, const NamedTensors& tensors, const std::string& source) {
  std::map<std::string, Tensor> file;
  std::map<std::string, Shape> shapes;
  for (auto& [name, t] : tensors) {
    file[name] = t;
    shapes[name] = t.shape();
  }
  check_names_and_shapes(model, shapes, source);
  NoGradGuard no_grad;
  for (auto& [name, p] : model.named_parameters()) {
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

NamedTensors read_weight_file(const std::string& path, const nn::Module* model) {
  NamedTensors tensors;
  if (is_zip_file(path)) {
    StateDictCheck check;
    if (model) {
      check.names_and_shapes = [&](const std::vector<std::pair<std::string, Shape>>& named) {
        const size_t drop = ddp_prefix(named);
        std::map<std::string, Shape> shapes;
        for (auto& [name, shape] : named) shapes[name.substr(drop)] = shape;
        check_names_and_shapes(*model, shapes, path);
      };
      // float64 files hold 8 bytes a value; the ignored buffers and slack fit in the 64 MiB.
      int64_t values = 0;
      for (auto& [name, p] : model->named_parameters()) values += p.numel();
      check.max_bytes = static_cast<uint64_t>(values) * 8 + (uint64_t{64} << 20);
    }
    tensors = load_torch_state_dict(path, check);
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
  if (const size_t drop = ddp_prefix(tensors))
    for (auto& [name, t] : tensors) name.erase(0, drop);
  return tensors;
}

void load_weights(nn::Module& model, const std::string& path) {
  load_weights(model, read_weight_file(path, &model), path);
}

}  // namespace coca
