// coca-eval <subcommand> [options]: evaluation of a trained CoCa model.
#include <boost/program_options/errors.hpp>
#include <cstdio>
#include <cstring>
#include <string>

#include "coca/eval/cli.h"
#include "coca/kernels/cpu/blas_select.h"

namespace {

struct Subcommand {
  const char* name;
  const char* help;
  int (*main)(int, char**);
};

const Subcommand kSubcommands[] = {
    {"zeroshot", "zero-shot classification: top-1, top-5, mean per-class accuracy, confused pairs",
     coca::eval::zeroshot_main},
    {"retrieval", "image-text retrieval: recall@1/5/10, mean and median rank (several captions per image)",
     coca::eval::retrieval_main},
    {"caption", "caption generation (greedy, beam, sampling) with BLEU-4 and CIDEr-D against references",
     coca::eval::caption_main},
    {"embed", "image/text features, caption logits and losses of one batch (HDF5 in, HDF5 out)",
     coca::eval::embed_main},
};

void usage(std::FILE* f) {
  std::fprintf(f, "usage: [mpirun -np N] coca-eval <subcommand> [options]\n\nsubcommands:\n");
  for (const auto& s : kSubcommands) std::fprintf(f, "  %-10s %s\n", s.name, s.help);
  std::fprintf(f, "\nRun 'coca-eval <subcommand> --help' for its options.\n");
}

}  // namespace

int main(int argc, char** argv) {
  coca::cpu::select_blas_kernels(argv);  // before any thread: may re-execute this program
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string sub = argv[1];
  for (const auto& s : kSubcommands) {
    if (sub != s.name) continue;
    try {
      return s.main(argc - 1, argv + 1);
    } catch (const boost::program_options::error& e) {
      std::fprintf(stderr, "coca-eval %s: %s (see --help)\n", s.name, e.what());
      return 2;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "coca-eval %s: error: %s\n", s.name, e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "coca-eval: unknown subcommand '%s'\n", sub.c_str());
  usage(stderr);
  return 2;
}
