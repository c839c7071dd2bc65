// coca-eval <subcommand> [options]: evaluation of a trained CoCa model.
#include <boost/program_options.hpp>
#include <cstdio>
#include <iostream>
#include <string>

#include "coca/eval/embed.h"
#include "coca/tensor/error.h"

namespace po = boost::program_options;

namespace {

const char* kUsage =
    "usage: coca-eval <subcommand> [options]\n"
    "\n"
    "subcommands:\n"
    "  embed      image/text features, caption logits and losses of one batch (HDF5 in, HDF5 out)\n"
    "\n"
    "Run 'coca-eval <subcommand> --help' for its options.\n";

int embed_main(int argc, char** argv) {
  coca::eval::EmbedOptions o;
  po::options_description desc("coca-eval embed options");
  desc.add_options()("help,h", "print this help")(
      "model-config", po::value(&o.model_config)->required(), "model config JSON file, or a name in launch/configs/")(
      "weights", po::value(&o.weights)->required(), "model.safetensors (ours or OpenCLIP's)")(
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
  coca::eval::run_embed(o);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string sub = argv[1];
  try {
    if (sub == "embed") return embed_main(argc - 1, argv + 1);
    std::fprintf(stderr, "coca-eval: unknown subcommand '%s'\n%s", sub.c_str(), kUsage);
    return 2;
  } catch (const po::error& e) {
    std::fprintf(stderr, "coca-eval %s: %s (see --help)\n", sub.c_str(), e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "coca-eval %s: error: %s\n", sub.c_str(), e.what());
    return 1;
  }
}
