// coca-eval zeroshot: classification accuracy on a labelled shard set, under mpirun or alone.
#include <boost/program_options.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "coca/dist/mpi.h"
#include "coca/eval/cli.h"
#include "coca/eval/common.h"
#include "coca/eval/zeroshot.h"
#include "coca/model/weights.h"

namespace coca::eval {

namespace po = boost::program_options;

int zeroshot_main(int argc, char** argv) {
  ZeroShotOptions o;
  std::string output;
  po::options_description desc("coca-eval zeroshot options");
  desc.add_options()("help,h", "print this help");
  ModelArgs margs;
  margs.add_to(desc, /*with_device=*/true);
  desc.add_options()("data", po::value(&o.data)->required(), "classification shard set (labels, classnames)")(
      "templates", po::value(&o.templates_file),
      "prompt templates, one per line, '{}' = class name: a file, or a bundled set: openai (CLIP's 80 "
      "ImageNet prompts), simple (7) (default: \"a photo of a {}.\")")(
      "classnames", po::value(&o.classnames_file),
      "class names in label order, one per line: a file, or a bundled list: imagenet1k (default: the "
      "shards' classnames)")(
      "tokenizer", po::value(&o.tokenizer), "BPE merges file (default: the one the shard index names)")(
      "batch-size", po::value(&o.batch_size)->default_value(64), "images per batch")(
      "top-confused", po::value(&o.top_confused)->default_value(10), "how many confused pairs to list")(
      "output", po::value(&output), "write the metrics as JSON here");
  if (!parse_subcommand(argc, argv, desc,
                        "usage: [mpirun -np N] coca-eval zeroshot --weights W.safetensors --data DIR [options]\n\n"
                        "Class embeddings: the renormalised mean over templates of normalised text features.\n"
                        "Ranks split the images; the metrics equal the single-process ones.\n\n"))
    return 0;
  return run_on_ranks("coca-eval zeroshot", [&](dist::MpiCommunicator& comm) {
    o.rank = comm.rank();
    o.world = comm.size();
    std::unique_ptr<CoCa> model = margs.load(comm.local_rank(), comm.local_size());
    const CoCa& net = *model;
    ZeroShotResult r = zeroshot(net, o, mpi_reducer(comm));
    if (o.rank == 0) {
      std::printf("zero-shot on %s (%lld images, %lld classes)\n", o.data.c_str(), (long long)r.images,
                  (long long)r.classes);
      std::printf("  %-18s %7.2f %%\n  %-18s %7.2f %%\n  %-18s %7.2f %%\n", "top-1", 100 * r.top1, "top-5",
                  100 * r.top5, "mean per class", 100 * r.mean_per_class);
      if (!r.confused.empty()) std::printf("  most confused (true -> predicted, count):\n");
      for (auto& c : r.confused)
        std::printf("    %s -> %s (%lld)\n", c.truth.c_str(), c.predicted.c_str(), (long long)c.count);
      if (!output.empty()) {
        nlohmann::json j = {{"data", o.data},
                            {"weights", margs.weights},
                            {"images", r.images},
                            {"classes", r.classes},
                            {"top1", r.top1},
                            {"top5", r.top5},
                            {"mean_per_class", r.mean_per_class},
                            {"confused", nlohmann::json::array()}};
        for (auto& c : r.confused)
          j["confused"].push_back({{"true", c.truth}, {"predicted", c.predicted}, {"count", c.count}});
        j["per_class"] = nlohmann::json::array();
        for (auto& c : r.per_class) j["per_class"].push_back({{"class", c.name}, {"images", c.images}, {"top1", c.top1}});
        write_json_file(output, j, 2);
      }
    }
  });
}

}  // namespace coca::eval
