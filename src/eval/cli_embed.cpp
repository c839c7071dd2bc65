#include <boost/program_options.hpp>
#include <iostream>

#include "coca/eval/cli.h"
#include "coca/eval/embed.h"

namespace coca::eval {

namespace po = boost::program_options;

int embed_main(int argc, char** argv) {
  EmbedOptions o;
  po::options_description desc("coca-eval embed options");
  desc.add_options()("help,h", "print this help")(
      "model-config", po::value(&o.model_config)->required(), "model config JSON file, or a name in launch/configs/")(
      "weights", po::value(&o.weights)->required(),
      "model weights: our model.safetensors, or OpenCLIP's .safetensors, .bin or epoch_K.pt")(
      "input", po::value(&o.input)->required(), "HDF5 with 'images' float32 [B,3,H,W] (normalised), 'tokens' int32 [B,L]")(
      "output", po::value(&o.output)->required(), "HDF5 to write: image_features, text_features, losses")(
      "logits", po::bool_switch(&o.logits), "also write caption_logits [B,L-1,V]");
  po::variables_map vm;
  po::store(po::command_line_parser(argc, argv).options(desc).run(), vm);
  if (vm.count("help")) {
    std::cout << "usage: coca-eval embed --model-config CFG --weights W.safetensors --input batch.h5 --output out.h5 "
                 "[--logits]\n\n"
              << desc;
    return 0;
  }
  po::notify(vm);
  run_embed(o);
  return 0;
}

}  // namespace coca::eval
