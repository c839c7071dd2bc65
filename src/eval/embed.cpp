#include "coca/eval/embed.h"

#include <cstdio>

#include "coca/eval/h5_tensor.h"
#include "coca/loss/coca_loss.h"
#include "coca/model/weights.h"

namespace coca::eval {

void run_embed(const EmbedOptions& o) {
  CocaConfig cfg = CocaConfig::from_file(find_model_config(o.model_config));
  CoCa model(cfg, DType::f32, /*initialize_weights=*/false);
  load_weights(model, o.weights);
  Tensor images = h5::read_tensor(o.input, "images");
  Tensor tokens = h5::read_tensor(o.input, "tokens");
  COCA_CHECK(images.dtype() == DType::f32 || images.dtype() == DType::f64, o.input, ": 'images' must be float, got ",
             images.describe());
  COCA_CHECK(tokens.dtype() == DType::i32, o.input, ": 'tokens' must be int32, got ", tokens.describe());
  const int64_t S = cfg.vision.image_size, L = cfg.text.context_length;
  COCA_CHECK(images.dim() == 4 && images.size(1) == 3 && images.size(2) == S && images.size(3) == S, o.input,
             ": 'images' ", images.describe(), " must be [B, 3, ", S, ", ", S, "] for model ", cfg.name);
  COCA_CHECK(tokens.dim() == 2 && tokens.size(0) == images.size(0) && tokens.size(1) == L, o.input, ": 'tokens' ",
             tokens.describe(), " must be [", images.size(0), ", ", L, "] for model ", cfg.name);
  COCA_CHECK(!o.logits || model.has_decoder(), "embed: --logits: model ", cfg.name,
             " is a CLIP (no multimodal decoder): it has no caption logits");
  NoGradGuard no_grad;
  CocaOutput out = model.forward(images.to(DType::f32), tokens);
  CocaLosses losses = coca_loss(out, tokens, cfg.text.pad_id);
  h5::Writer w(o.output);
  w.write("image_features", out.image_features);
  w.write("text_features", out.text_features);
  if (o.logits) w.write("caption_logits", out.caption_logits);
  w.write("contrastive_loss", losses.contrastive);
  if (model.has_decoder()) w.write("caption_loss", losses.caption);
  w.close();
  std::printf("embed: %ld pairs -> %s (contrastive loss %.6f", static_cast<long>(images.size(0)), o.output.c_str(),
              losses.contrastive.item());
  if (model.has_decoder()) std::printf(", caption loss %.6f", losses.caption.item());
  std::printf(")\n");
}

}  // namespace coca::eval
