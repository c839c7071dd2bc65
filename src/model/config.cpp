#include "coca/model/config.h"

#include <algorithm>

#include <cmath>
#include <filesystem>
#include <optional>
#include <fstream>
#include <iostream>
#include <set>

#include "coca/tensor/error.h"

namespace coca {

namespace {

using nlohmann::json;

class Reader {
 public:
  Reader(const json& j, std::string where, std::string source) : j_(j), where_(std::move(where)), source_(std::move(source)) {
    COCA_CHECK(j.is_object(), source_, ": '", where_, "' must be a JSON object");
  }
  int64_t integer(const char* key, std::optional<int64_t> def = std::nullopt, int64_t min_value = 1) {
    seen_.insert(key);
    if (!j_.contains(key)) {
      COCA_CHECK(def.has_value(), source_, ": required key '", where_, ".", key, "' is missing");
      return *def;
    }
    const json& v = j_.at(key);
    // An integer, or a float with an integral value ("768.0"), within int64 (a float past it
    // would not convert: 1e300 is refused, not cast).
    const bool integral =
        v.is_number_unsigned() ? v.get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX)
        : v.is_number_integer()
            ? true
            : v.is_number() && v.get<double>() == std::floor(v.get<double>()) && std::fabs(v.get<double>()) < 0x1p63;
    COCA_CHECK(integral, source_, ": key '", where_, ".", key, "' must be an integer (64-bit), got ", v.dump());
    const int64_t x = v.is_number_float() ? static_cast<int64_t>(v.get<double>()) : v.get<int64_t>();
    COCA_CHECK(x >= min_value, source_, ": key '", where_, ".", key, "' must be >= ", min_value, ", got ", x);
    return x;
  }
  double number(const char* key, double def) {
    seen_.insert(key);
    if (!j_.contains(key)) return def;
    COCA_CHECK(j_.at(key).is_number() && j_.at(key).get<double>() > 0, source_, ": key '", where_, ".", key,
               "' must be a positive number, got ", j_.at(key).dump());
    return j_.at(key).get<double>();
  }
  bool boolean(const char* key, bool def) {
    seen_.insert(key);
    if (!j_.contains(key)) return def;
    COCA_CHECK(j_.at(key).is_boolean(), source_, ": key '", where_, ".", key, "' must be true or false, got ",
               j_.at(key).dump());
    return j_.at(key).get<bool>();
  }
  // Keys that OpenCLIP configs carry but that do not change this model.
  void accept(std::initializer_list<const char*> keys) {
    for (auto k : keys) seen_.insert(k);
  }
  // Keys that would change the computation in a way we do not implement: refuse them.
  void refuse_if(const char* key, const json& harmless) {
    seen_.insert(key);
    if (j_.contains(key) && j_.at(key) != harmless)
      throw Error(str_cat(source_, ": key '", where_, ".", key, "' = ", j_.at(key).dump(), " is not supported (only ",
                          harmless.dump(), ")"));
  }
  void warn_unknown() const {
    for (auto it = j_.begin(); it != j_.end(); ++it)
      if (!seen_.count(it.key()))
        std::cerr << "warning: " << source_ << ": unknown key '" << where_ << "." << it.key() << "' ignored\n";
  }

 private:
  const json& j_;
  std::string where_, source_;
  std::set<std::string> seen_;
};

}  // namespace

CocaConfig CocaConfig::from_json(const json& j, const std::string& source) {
  CocaConfig c;
  c.name = source;
  COCA_CHECK(j.is_object(), source, ": a model config must be a JSON object");
  Reader top(j, "config", source);
  c.embed_dim = top.integer("embed_dim");
  c.init_logit_scale = top.number("init_logit_scale", c.init_logit_scale);
  COCA_CHECK(std::isfinite(c.init_logit_scale) && c.init_logit_scale >= 0 && c.init_logit_scale <= std::log(100.0),
             source, ": key 'init_logit_scale' must be in [0, ln 100] (the trainer clamps to it), got ",
             c.init_logit_scale);
  top.accept({"vision_cfg", "text_cfg", "multimodal_cfg", "preprocess_cfg"});
  top.refuse_if("quick_gelu", false);
  top.refuse_if("init_logit_bias", nullptr);  // SigLIP's sigmoid loss
  for (const char* k : {"vision_cfg", "text_cfg"})
    COCA_CHECK(j.contains(k), source, ": required key '", k, "' is missing");
  c.clip = !j.contains("multimodal_cfg");
  // CoCa's text tower is always under text.; a CLIP's only with custom_text.
  c.custom_text = top.boolean("custom_text", false) || !c.clip;
  top.warn_unknown();
  if (j.contains("preprocess_cfg")) {
    const json& pp = j.at("preprocess_cfg");
    COCA_CHECK(pp.is_object(), source, ": key 'preprocess_cfg' must be an object");
    Reader r(pp, "preprocess_cfg", source);
    for (auto [key, dst] : {std::pair<const char*, std::array<double, 3>*>{"mean", &c.image_mean}, {"std", &c.image_std}}) {
      r.accept({key});
      if (!pp.contains(key)) continue;
      const json& v = pp.at(key);
      const bool ok = v.is_array() && v.size() == 3 && v[0].is_number() && v[1].is_number() && v[2].is_number();
      COCA_CHECK(ok, source, ": key 'preprocess_cfg.", key, "' must be 3 numbers (R, G, B), got ", v.dump());
      for (int i = 0; i < 3; ++i) (*dst)[i] = v[i].get<double>();
    }
    for (double s : c.image_std)
      COCA_CHECK(s > 0, source, ": key 'preprocess_cfg.std' must be positive, got ", pp.at("std").dump());
    r.warn_unknown();
  }

  Reader v(j.at("vision_cfg"), "vision_cfg", source);
  c.vision.image_size = v.integer("image_size");
  c.vision.patch_size = v.integer("patch_size");
  c.vision.width = v.integer("width");
  c.vision.layers = v.integer("layers");
  c.vision.head_width = v.integer("head_width", 64);
  c.vision.mlp_ratio = v.number("mlp_ratio", 4.0);
  c.vision.attentional_pool = v.boolean("attentional_pool", false);
  c.vision.attn_pooler_queries = v.integer("attn_pooler_queries", 256, 2);
  c.vision.attn_pooler_heads = v.integer("attn_pooler_heads", 8);
  v.accept({"output_tokens"});
  v.refuse_if("pool_type", "tok");  // the class token ("avg" pooling is not implemented)
  v.accept({"patch_dropout"});
  if (j.at("vision_cfg").is_object() && j.at("vision_cfg").contains("patch_dropout")) {
    const json& pd = j.at("vision_cfg").at("patch_dropout");
    COCA_CHECK(pd.is_number() && pd.get<double>() >= 0 && pd.get<double>() < 1, source,
               ": key 'vision_cfg.patch_dropout' must be a number in [0, 1), got ", pd.dump());
    c.vision.patch_dropout = pd.get<double>();
  }
  v.refuse_if("ls_init_value", nullptr);
  v.refuse_if("final_ln_after_pool", false);
  v.warn_unknown();
  COCA_CHECK(c.vision.image_size % c.vision.patch_size == 0, source, ": 'vision_cfg.image_size' (",
             c.vision.image_size, ") must be a multiple of 'vision_cfg.patch_size' (", c.vision.patch_size, ")");
  COCA_CHECK(c.vision.width % c.vision.head_width == 0, source, ": 'vision_cfg.width' (", c.vision.width,
             ") must be a multiple of 'vision_cfg.head_width' (", c.vision.head_width, ")");
  COCA_CHECK(!c.vision.attentional_pool || c.embed_dim % c.vision.attn_pooler_heads == 0, source, ": 'embed_dim' (", c.embed_dim,
             ") must be a multiple of 'vision_cfg.attn_pooler_heads' (", c.vision.attn_pooler_heads, ")");

  Reader t(j.at("text_cfg"), "text_cfg", source);
  c.text.context_length = t.integer("context_length", std::nullopt, 2);
  c.text.vocab_size = t.integer("vocab_size", std::nullopt, 3);
  c.text.width = t.integer("width");
  c.text.heads = t.integer("heads");
  c.text.layers = t.integer("layers");
  c.text.mlp_ratio = t.number("mlp_ratio", 4.0);
  c.text.embed_cls = t.boolean("embed_cls", !c.clip);  // OpenCLIP's default is false; CoCa needs true
  c.text.pad_id = t.integer("pad_id", 0, 0);
  c.text.correct_cls_mask = t.boolean("correct_cls_mask", false);
  t.accept({"output_tokens", "eos_id"});
  // With a CLS token the CLS output is pooled whatever pool_type says (as in OpenCLIP);
  // without one, only "argmax" (the end-of-text position) is implemented.
  if (c.text.embed_cls) t.accept({"pool_type"});
  else t.refuse_if("pool_type", "argmax");
  t.refuse_if("proj_bias", false);
  t.refuse_if("proj_type", "linear");
  t.refuse_if("no_causal_mask", false);
  t.refuse_if("final_ln_after_pool", false);
  t.refuse_if("ls_init_value", nullptr);
  t.warn_unknown();
  COCA_CHECK(c.text.embed_cls || c.clip, source, ": key 'text_cfg.embed_cls' must be true for CoCa");
  COCA_CHECK(!c.text.embed_cls || c.custom_text, source,
             ": key 'text_cfg.embed_cls' must be false for a CLIP without 'custom_text' (OpenCLIP's CLIP text tower "
             "has no CLS token)");
  COCA_CHECK(c.text.width % c.text.heads == 0, source, ": 'text_cfg.width' must be a multiple of 'text_cfg.heads'");
  COCA_CHECK(c.text.pad_id < c.text.vocab_size, source, ": 'text_cfg.pad_id' must be below 'text_cfg.vocab_size'");

  if (c.clip) return c;
  Reader m(j.at("multimodal_cfg"), "multimodal_cfg", source);
  c.multimodal.context_length = m.integer("context_length", c.text.context_length, 2);
  c.multimodal.vocab_size = m.integer("vocab_size", std::nullopt, 3);
  c.multimodal.width = m.integer("width");
  c.multimodal.heads = m.integer("heads");
  c.multimodal.layers = m.integer("layers");
  c.multimodal.mlp_ratio = m.number("mlp_ratio", 4.0);
  m.accept({"attn_pooler_heads", "output_tokens", "dim_head", "n_queries"});
  m.refuse_if("ls_init_value", nullptr);
  m.warn_unknown();
  // The decoder's cross-attention reads the image tokens at its own width: the pooler's
  // output (embed_dim) or, without the pooler, the vision tower's tokens.
  if (c.vision.attentional_pool)
    COCA_CHECK(c.multimodal.width == c.embed_dim, source, ": 'multimodal_cfg.width' (", c.multimodal.width,
               ") must equal 'embed_dim' (", c.embed_dim, "): the attentional pooler's tokens enter the decoder");
  else
    COCA_CHECK(c.multimodal.width == c.vision.width, source, ": 'multimodal_cfg.width' (", c.multimodal.width,
               ") must equal 'vision_cfg.width' (", c.vision.width,
               ") without an attentional pooler: the image tokens enter the decoder");
  COCA_CHECK(c.multimodal.width % c.multimodal.heads == 0, source,
             ": 'multimodal_cfg.width' must be a multiple of 'multimodal_cfg.heads'");
  COCA_CHECK(c.text.width == c.multimodal.width, source, ": 'text_cfg.width' (", c.text.width,
             ") must equal 'multimodal_cfg.width' (", c.multimodal.width, "): text tokens enter the decoder");
  return c;
}

CocaConfig CocaConfig::from_file(const std::string& path) {
  std::ifstream in(path);
  COCA_CHECK(in.good(), "model config ", path, ": cannot open file");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1e999
    throw Error(str_cat("model config ", path, ": invalid JSON: ", e.what()));
  }
  CocaConfig c = from_json(j, path);
  c.name = std::filesystem::path(path).stem().string();
  return c;
}

json CocaConfig::to_json() const {
  json j;
  j["embed_dim"] = embed_dim;
  j["vision_cfg"] = {{"image_size", vision.image_size}, {"patch_size", vision.patch_size},
                     {"width", vision.width},           {"layers", vision.layers},
                     {"head_width", vision.head_width}, {"mlp_ratio", vision.mlp_ratio}};
  if (vision.attentional_pool) {
    j["vision_cfg"]["attentional_pool"] = true;
    j["vision_cfg"]["attn_pooler_queries"] = vision.attn_pooler_queries;
    j["vision_cfg"]["attn_pooler_heads"] = vision.attn_pooler_heads;
  }
  if (!clip) j["vision_cfg"]["output_tokens"] = true;
  if (vision.patch_dropout > 0) j["vision_cfg"]["patch_dropout"] = vision.patch_dropout;
  if (image_mean != CocaConfig().image_mean || image_std != CocaConfig().image_std)
    j["preprocess_cfg"] = {{"mean", image_mean}, {"std", image_std}};
  j["text_cfg"] = {{"context_length", text.context_length}, {"vocab_size", text.vocab_size},
                   {"width", text.width},                   {"heads", text.heads},
                   {"layers", text.layers},                 {"mlp_ratio", text.mlp_ratio},
                   {"embed_cls", text.embed_cls},           {"pad_id", text.pad_id}};
  if (text.embed_cls) j["text_cfg"]["correct_cls_mask"] = text.correct_cls_mask;
  if (!clip) {
    j["text_cfg"]["output_tokens"] = true;
    j["multimodal_cfg"] = {{"context_length", multimodal.context_length}, {"vocab_size", multimodal.vocab_size},
                           {"width", multimodal.width},                   {"heads", multimodal.heads},
                           {"layers", multimodal.layers},                 {"mlp_ratio", multimodal.mlp_ratio}};
  }
  if (custom_text) j["custom_text"] = true;
  if (init_logit_scale != CocaConfig().init_logit_scale) j["init_logit_scale"] = init_logit_scale;
  return j;
}

std::array<double, 3> parse_rgb_triple(const std::string& text, const std::string& flag, bool positive) {
  std::array<double, 3> out{};
  size_t n = 0, pos = 0;
  bool ok = true;
  while (ok && pos < text.size()) {
    const size_t end = text.find_first_of(", ", pos);
    const std::string word = text.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
    pos = end == std::string::npos ? text.size() : end + 1;
    if (word.empty()) continue;
    try {
      size_t used = 0;
      const double v = std::stod(word, &used);
      ok = used == word.size() && n < 3 && std::isfinite(v) && (!positive || v > 0);
      if (ok) out[n++] = v;
    } catch (const std::exception&) {
      ok = false;
    }
  }
  COCA_CHECK(ok && n == 3, flag, " must be three numbers R,G,B", positive ? " (positive)" : "", ", got '", text, "'");
  return out;
}

std::string find_model_config(const std::string& name_or_path) {
  namespace fs = std::filesystem;
  if (fs::is_regular_file(name_or_path)) return name_or_path;
  for (const fs::path& dir : {fs::path(COCA_SOURCE_DIR) / "launch" / "configs", fs::path("launch/configs")}) {
    fs::path p = dir / (name_or_path + ".json");
    if (fs::is_regular_file(p)) return p.string();
  }
  std::vector<std::string> names;
  std::error_code ec;
  for (const fs::path& dir : {fs::path(COCA_SOURCE_DIR) / "launch" / "configs", fs::path("launch/configs")}) {
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
      if (it->path().extension() == ".json") names.push_back(it->path().stem().string());
    if (!names.empty()) break;
  }
  std::sort(names.begin(), names.end());
  std::string known;
  for (const std::string& n : names) known += (known.empty() ? "" : ", ") + n;
  throw Error(str_cat("model '", name_or_path, "': no such config file, and no launch/configs/", name_or_path,
                      ".json", known.empty() ? "" : str_cat(" (the model configs here: ", known, ")")));
}

}  // namespace coca
