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
  if (!missing.empty() || !wrong.empty() || !extra.empty()) {
    std::string msg = str_cat("weights ", source, " do not match the model config:");
    auto list = [&](const char* what, const std::vector<std::string>& names) {
      if (names.empty()) return;
      msg += str_cat(" ", names.size(), " ", what, ":");
      for (size_t i = 0; i < names.size(); ++i) msg += (i ? ", " : " ") + names[i];
      msg += ";";
    };
    list("missing", missing);
    list("wrongly shaped", wrong);
    list("unexpected", extra);
    throw Error(msg);
  }
  NoGradGuard no_grad;
  for (auto& [name, p] : params) {
    Tensor src = file[name];
    p.copy_(src.dtype() == p.dtype() ? src : src.to(p.dtype()));
  }
}

void load_weights(nn::Module& model, const std::string& path) { load_weights(model, load_safetensors(path), path); }

}  // namespace coca
