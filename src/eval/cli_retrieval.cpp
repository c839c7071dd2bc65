// coca-eval retrieval: image-text recall@1/5/10 and mean/median rank on a captioned shard set,
// under mpirun or alone.
#include <boost/program_options.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "coca/dist/mpi.h"
#include "coca/eval/cli.h"
#include "coca/eval/common.h"
#include "coca/eval/retrieval.h"
#include "coca/model/weights.h"

namespace coca::eval {

namespace po = boost::program_options;

static nlohmann::json recall_json(const RecallMetrics& m) {
  return {
      {"R@1", m.r1},         {"R@5", m.r5}, {"R@10", m.r10}, {"mean_rank", m.mean_rank}, {"median_rank", m.median_rank},
      {"queries", m.queries}};
}

int retrieval_main(int argc, char** argv) {
  RetrievalOptions o;
  std::string output;
  po::options_description desc("coca-eval retrieval options");
  desc.add_options()("help,h", "print this help");
  ModelArgs margs;
  margs.add_to(desc, /*with_device=*/true);
  desc.add_options()("data", po::value(&o.data)->required(), "captioned shard set (rows with one key = one image; COCO: one image id)")(
      "tokenizer", po::value(&o.tokenizer),
      "BPE merges file, used when the shards' tokens do not match the model's context length "
      "(default: the one the shard index names)")("batch-size", po::value(&o.batch_size)->default_value(64),
                                                  "rows per batch")("output", po::value(&output),
                                                                    "write the metrics as JSON here");
  if (!parse_subcommand(argc, argv, desc,
                        "usage: [mpirun -np N] coca-eval retrieval --weights W.safetensors --data DIR [options]\n\n"
                        "Image-to-text: rank of the best-scored caption of each image among all captions;\n"
                        "text-to-image: rank of each caption's image among all images (cosine similarity).\n"
                        "COCO sets (keys coco:<image>:<annotation>) are grouped per image id: the 5k-image\n"
                        "protocol, any of an image's captions counts as a hit.\n"
                        "Ranks split the rows; the metrics equal the single-process ones.\n\n"))
    return 0;
  return run_on_ranks("coca-eval retrieval", [&](dist::MpiCommunicator& comm) {
    o.rank = comm.rank();
    o.world = comm.size();
    std::unique_ptr<CoCa> model = margs.load(comm.local_rank(), comm.local_size());
    const CoCa& net = *model;
    RetrievalResult r = retrieval(net, o, mpi_reducer(comm));
    if (o.rank == 0) {
      std::printf("retrieval on %s (%lld images, %lld captions)\n", o.data.c_str(), (long long)r.images,
                  (long long)r.texts);
      std::printf("  %-14s %7s %7s %7s %10s %10s\n", "", "R@1", "R@5", "R@10", "mean rank", "median");
      for (auto [name, m] : {std::pair{"image->text", &r.image_to_text}, std::pair{"text->image", &r.text_to_image}})
        std::printf("  %-14s %6.2f%% %6.2f%% %6.2f%% %10.2f %10.1f\n", name, 100 * m->r1, 100 * m->r5, 100 * m->r10,
                    m->mean_rank, m->median_rank);
      if (!output.empty()) {
        nlohmann::json j = {{"data", o.data},
                            {"weights", margs.weights},
                            {"images", r.images},
                            {"texts", r.texts},
                            {"image_to_text", recall_json(r.image_to_text)},
                            {"text_to_image", recall_json(r.text_to_image)}};
        write_json_file(output, j, 2);
      }
    }
  });
}

}  // namespace coca::eval
