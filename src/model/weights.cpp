#include "coca/model/weights.h"

#include <map>

#include "coca/autograd/node.h"

namespace coca {

void save_weights(const nn::Module& model, const std::string& path) {
  NamedTensors out;
  for (auto& [name, t] : model.named_parameters()) out.emplace_back(name, t.dtype() == DType::f32 ? t : t.to(DType::f32));
  save_safetensors(path, out, {{"format", "pt"}});
}

void load_weights(nn::Module& model, const NamedTensors& tensors, const std::string& source) {
  std::map<std::string, Tensor> file;
  for (auto& [name, t] : tensors) file[name] = t;
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
  if (!missing.empty() || !wrong.empty() || !extra.empty())
    throw Error(
        str_cat("weights ", source, " do not match the model config: ", describe_mismatch(missing, extra, wrong)));
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

void load_weights(nn::Module& model, const std::string& path) { load_weights(model, load_safetensors(path), path); }

}  // namespace coca
