#pragma once
// Model weights as OpenCLIP-named safetensors (spec section 10).
#include <string>

#include "coca/nn/module.h"
#include "coca/tensor/safetensors.h"

namespace coca {

void save_weights(const nn::Module& model, const std::string& path);
// Copies every tensor into the model's parameters (converting dtype). Any missing, extra or
// wrongly shaped tensor is an error that lists every offending name.
void load_weights(nn::Module& model, const std::string& path);
void load_weights(nn::Module& model, const NamedTensors& tensors, const std::string& source);

}  // namespace coca
