#pragma once
// `coca-eval embed`: features, optional caption logits and the two unweighted losses of one
// batch, computed exactly as training computes them.
#include <string>

namespace coca::eval {

struct EmbedOptions {
  std::string model_config, weights, input, output;
  bool logits = false;
};

void run_embed(const EmbedOptions& o);

}  // namespace coca::eval
