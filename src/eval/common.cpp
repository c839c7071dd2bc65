#include "coca/eval/common.h"

#include "coca/data/tokenizer.h"

#include "coca/data/bundled.h"

#include <boost/program_options.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "coca/dist/device.h"
#include "coca/dist/mpi.h"

#include "coca/model/weights.h"

namespace coca::eval {

namespace po = boost::program_options;
namespace fs = std::filesystem;

void ModelArgs::add_to(po::options_description& desc, bool with_device) {
  desc.add_options()("model", po::value(&model)->default_value("coca_tiny"), "config name in launch/configs/")(
      "model-config", po::value(&model_config), "model config JSON (overrides --model)")(
      "weights", po::value(&weights)->required(),
      "model weights: our model.safetensors, or OpenCLIP's .safetensors, .bin or epoch_K.pt")(
      "image-mean", po::value(&image_mean), "R,G,B: image normalisation mean (default: the config's preprocess_cfg, "
      "else CLIP's); pass what the model was trained with")(
      "image-std", po::value(&image_std), "R,G,B: image normalisation std (as --image-mean)");
  if (with_device)
    desc.add_options()("device", po::value(&device)->default_value("auto"),
                       "cpu, cuda (GPU <local rank>) or auto (cuda when built with it and a GPU is there)")(
        "precision", po::value(&precision)->default_value("auto"),
        "auto (amp_bf16 on cuda, fp32 on cpu), fp32, tf32 or amp_bf16 (bf16 matmul operands)");
}

std::unique_ptr<CoCa> ModelArgs::load(int local_rank, int local_size) const {
  const Device dev = dist::select_device(device, local_rank, local_size);
  dist::apply_precision(dev, precision);
  CocaConfig cfg = CocaConfig::from_file(model_config.empty() ? find_model_config(model) : model_config);
  if (!image_mean.empty()) cfg.image_mean = parse_rgb_triple(image_mean, "--image-mean", false);
  if (!image_std.empty()) cfg.image_std = parse_rgb_triple(image_std, "--image-std", true);
  auto net = std::make_unique<CoCa>(cfg, DType::f32, /*initialize_weights=*/false);
  load_weights(*net, weights);
  net->to(dev);
  return net;
}

std::string resolve_tokenizer(const std::string& given, const ShardIndex& index, const std::string& dir,
                              const char* what, int64_t model_vocab, std::string* note) {
  if (!given.empty()) return given;
  std::string path;
  if (index.tokenizer.is_object() && index.tokenizer.contains("file")) {
    path = index.tokenizer["file"].get<std::string>();
    if (!fs::exists(path)) path = (fs::path(dir) / path).string();
    if (fs::exists(path) || model_vocab != BpeTokenizer::kOpenClipVocabSize) return path;
  }
  COCA_CHECK(model_vocab == BpeTokenizer::kOpenClipVocabSize, what, ": no tokenizer given (--tokenizer) and ", dir,
             "/index.json names none");
  std::string found;
  const std::string clip = find_clip_tokenizer(found);
  COCA_CHECK(!clip.empty(), what, ": no tokenizer given (--tokenizer), ", dir, "/index.json names ",
             path.empty() ? "none" : str_cat(path, ", which does not exist"),
             ", and the model's 49,408-token vocabulary is OpenCLIP's: put OpenCLIP's ", kClipTokenizerFile,
             " in $COCA_DATA_DIR (or <prefix>/share/coca/), install the open_clip Python package, or pass "
             "--tokenizer FILE (looked for ", found, ")");
  if (note) *note = found;
  return clip;
}

EvalOptions reader_options(const CoCa& model, const std::string& dir, int batch_size, int rank, int world) {
  EvalOptions eo;
  eo.dir = dir;
  eo.batch_size = batch_size;
  eo.image_size = static_cast<int>(model.config().vision.image_size);
  eo.rank = rank;
  eo.world = world;
  for (int c = 0; c < 3; ++c) {  // the model config's preprocess_cfg (coca-train --image-mean/--image-std)
    eo.mean[c] = static_cast<float>(model.config().image_mean[c]);
    eo.std[c] = static_cast<float>(model.config().image_std[c]);
  }
  return eo;
}

bool parse_subcommand(int argc, char** argv, const po::options_description& desc, const char* usage) {
  po::variables_map vm;
  po::store(po::command_line_parser(argc, argv).options(desc).run(), vm);
  if (vm.count("help")) {
    std::cout << usage << desc;
    return false;
  }
  po::notify(vm);
  return true;
}

int run_on_ranks(const char* what, const std::function<void(dist::MpiCommunicator&)>& body) {
  auto comm = dist::init(nullptr, nullptr);
  try {
    body(*comm);
  } catch (const std::exception& e) {
    if (comm->size() > 1) dist::fatal(str_cat(what, ": ", e.what()));
    throw;
  }
  dist::finalize();
  return 0;
}

void write_json_file(const std::string& path, const nlohmann::json& j, int indent) {
  std::ofstream out(path);
  out << j.dump(indent) << "\n";
  COCA_CHECK(out.good(), "cannot write ", path);
}

}  // namespace coca::eval
