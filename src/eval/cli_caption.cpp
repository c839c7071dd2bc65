// coca-eval caption: generates a caption for every image of a captioned shard set (rows
// whose keys name one image, see image_group; its rows' captions = its references) and scores them with
// BLEU-4 and CIDEr-D. Ranks split the rows; each image is captioned by the rank holding its
// first row, the token ids are all-gathered, and rank 0 scores the whole set, so the metrics
// equal the single-process ones.
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "coca/data/loader.h"
#include "coca/data/tokenizer.h"
#include "coca/dist/mpi.h"
#include "coca/eval/caption_metrics.h"
#include "coca/eval/cli.h"
#include "coca/eval/common.h"
#include "coca/eval/generate.h"
#include "coca/eval/retrieval.h"
#include "coca/model/weights.h"

namespace coca::eval {

namespace po = boost::program_options;

namespace {

struct CaptionRun {
  std::vector<std::vector<int32_t>> tokens;  // per image
  int64_t generated = 0;                     // tokens over all ranks, end-of-text included
  int64_t local_generated = 0;               // this rank's
  double seconds = 0;                        // this rank's generation time (image tower included)
};

// This rank's images (those whose first row it reads), captioned, then gathered from all ranks
// as [image, n, ids...] records.
CaptionRun caption_images(const CoCa& model, const CaptionedSet& set, const std::string& dir, int batch_size,
                          const GenerateOptions& g, int rank, int world, const Reducer& reduce) {
  NoGradGuard no_grad;
  EvalOptions eo;
  eo.dir = dir;
  eo.batch_size = batch_size;
  eo.image_size = static_cast<int>(model.config().vision.image_size);
  eo.rank = rank;
  eo.world = world;
  for (int c = 0; c < 3; ++c) {
    eo.mean[c] = static_cast<float>(model.config().image_mean[c]);
    eo.std[c] = static_cast<float>(model.config().image_std[c]);
  }
  EvalReader reader(eo);
  std::vector<int64_t> records;
  CaptionRun run;
  double generated = 0;
  Batch b;
  while (reader.next(b)) {
    std::vector<Tensor> imgs;
    std::vector<int64_t> ids;
    for (size_t i = 0; i < b.indices.size(); ++i) {
      const int64_t img = set.row_image[b.indices[i]];
      if (set.image_first_row[img] != b.indices[i]) continue;
      imgs.push_back(b.images.slice(0, static_cast<int64_t>(i), static_cast<int64_t>(i) + 1));
      ids.push_back(img);
    }
    if (ids.empty()) continue;
    const auto t0 = std::chrono::steady_clock::now();
    Tensor image_tokens = model.visual->forward(concat(imgs, 0)).tokens;  // [n, Q-1, E]
    auto caps = generate(model, image_tokens, g, ids);
    run.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (size_t i = 0; i < ids.size(); ++i) {
      records.push_back(ids[i]);
      records.push_back(static_cast<int64_t>(caps[i].size()));
      records.insert(records.end(), caps[i].begin(), caps[i].end());
      generated += static_cast<double>(caps[i].size()) + 1;
    }
  }
  records = reduce.concat(records);
  run.local_generated = static_cast<int64_t>(generated);
  std::vector<double> total{generated};
  reduce.sum(total);
  run.generated = static_cast<int64_t>(total[0]);
  run.tokens.assign(set.images(), {});
  std::vector<bool> seen(set.images(), false);
  for (size_t p = 0; p < records.size();) {
    COCA_CHECK(p + 2 <= records.size(), "caption: truncated gathered record");
    const int64_t img = records[p], n = records[p + 1];
    COCA_CHECK(img >= 0 && img < set.images() && !seen[img] && p + 2 + n <= records.size(),
               "caption: bad gathered record for image ", img);
    seen[img] = true;
    run.tokens[img].assign(records.begin() + p + 2, records.begin() + p + 2 + n);
    p += 2 + n;
  }
  for (int64_t i = 0; i < set.images(); ++i)
    COCA_CHECK(seen[i], "caption: no rank captioned image ", i, " (key ", set.keys[set.image_first_row[i]], ")");
  return run;
}

}  // namespace

int caption_main(int argc, char** argv) {
  std::string data, tokenizer, output, captions_out, method;
  int batch_size = 16;
  GenerateOptions g;
  po::options_description desc("coca-eval caption options");
  desc.add_options()("help,h", "print this help");
  ModelArgs margs;
  margs.add_to(desc);
  desc.add_options()("data", po::value(&data)->required(), "captioned shard set (rows with one key = one image; COCO: one image id)")(
      "tokenizer", po::value(&tokenizer), "BPE merges file (default: the one the shard index names)")(
      "batch-size", po::value(&batch_size)->default_value(16), "rows read per batch")(
      "method", po::value(&method)->default_value("greedy"), "greedy | beam | sample")(
      "max-length", po::value(&g.max_length)->default_value(0),
      "most tokens generated, end-of-text included (0: context length - 1)")(
      "beams", po::value(&g.beams)->default_value(3), "beam: beam count")(
      "length-penalty", po::value(&g.length_penalty)->default_value(1.0),
      "beam: hypotheses are ranked by log-probability / length^this")(
      "temperature", po::value(&g.temperature)->default_value(1.0), "sample: logits are divided by this")(
      "top-k", po::value(&g.top_k)->default_value(0), "sample: keep the k most probable tokens (0: all)")(
      "top-p", po::value(&g.top_p)->default_value(1.0), "sample: keep the most probable tokens up to this mass")(
      "seed", po::value(&g.seed)->default_value(0), "sample: seed (each image draws from (seed, image))")(
      "captions", po::value(&captions_out), "write every image's key, caption and references here (JSON)")(
      "output", po::value(&output), "write the metrics as JSON here");
  if (!parse_subcommand(argc, argv, desc,
                        "usage: [mpirun -np N] coca-eval caption --weights W.safetensors --data DIR [options]\n\n"
                        "Generates a caption per image (rows with one key, or COCO rows with one image id) with a key/value cache,\n"
                        "and scores them against the rows' captions with BLEU-4 and CIDEr-D (pycocoevalcap's\n"
                        "definitions; words: lower-cased, punctuation stripped, approximating PTBTokenizer).\n"
                        "Ranks split the rows; the metrics equal the single-process ones.\n\n"))
    return 0;
  g.method = parse_decode_method(method);
  return run_on_ranks("coca-eval caption", [&](dist::MpiCommunicator& comm) {
    std::unique_ptr<CoCa> model = margs.load();
    const CoCa& net = *model;
    COCA_CHECK(net.has_decoder(), "caption: model ", net.config().name,
               " is a CLIP (no multimodal decoder): it has no captions to generate");
    const CaptionedSet set = load_captioned_set(data);
    COCA_CHECK(set.rows() > 0, "caption data ", data, " holds no rows");
    const BpeTokenizer tok = BpeTokenizer::load(resolve_tokenizer(tokenizer, ShardIndex::load(data), data, "caption"));
    COCA_CHECK(tok.vocab_size() == net.config().multimodal.vocab_size, "caption: tokenizer has ", tok.vocab_size(),
               " tokens but the model's vocab_size is ", net.config().multimodal.vocab_size);
    g.sot = tok.sot();
    g.eot = tok.eot();
    CaptionRun run = caption_images(net, set, data, batch_size, g, comm.rank(), comm.size(), mpi_reducer(comm));
    if (comm.rank() == 0) {
      std::vector<std::string> generated;
      std::vector<Words> cands;
      std::vector<std::vector<Words>> refs;
      for (int64_t i = 0; i < set.images(); ++i) {
        generated.push_back(tok.decode_row(run.tokens[i]));
        std::vector<Words> r;
        for (int64_t row : set.image_rows[i]) {
          Words w = caption_words(set.captions[row]);
          if (!w.empty()) r.push_back(std::move(w));
        }
        if (r.empty()) continue;  // an image without references is captioned but not scored
        cands.push_back(caption_words(generated.back()));
        refs.push_back(std::move(r));
      }
      nlohmann::json j = {{"data", data},     {"weights", margs.weights},      {"images", set.images()},
                          {"method", method}, {"scored_images", cands.size()}, {"generated_tokens", run.generated}};
      if (g.method == DecodeMethod::beam) {
        j["beams"] = g.beams;
        j["length_penalty"] = g.length_penalty;
      }
      if (g.method == DecodeMethod::sample) {
        j["temperature"] = g.temperature;
        j["top_k"] = g.top_k;
        j["top_p"] = g.top_p;
        j["seed"] = g.seed;
      }
      std::printf("captioned %lld images of %s (%s, %lld tokens, rank 0: %.1f tokens/s)\n", (long long)set.images(),
                  data.c_str(), method.c_str(), (long long)run.generated,
                  run.seconds > 0 ? static_cast<double>(run.local_generated) / run.seconds : 0.0);
      if (!cands.empty()) {
        BleuScore bleu = corpus_bleu(cands, refs);
        CiderScore cider = cider_d(cands, refs);
        for (int n = 0; n < 4; ++n) j[str_cat("bleu", n + 1)] = bleu.bleu[n];
        j["cider_d"] = cider.mean;
        std::printf("  BLEU-4 %.4f  CIDEr-D %.4f  (BLEU-1 %.4f, %zu images scored)\n", bleu.bleu[3], cider.mean,
                    bleu.bleu[0], cands.size());
      } else {
        std::printf("  no reference captions: not scored\n");
      }
      if (!output.empty()) {
        write_json_file(output, j, 2);
      }
      if (!captions_out.empty()) {
        nlohmann::json c = nlohmann::json::array();
        for (int64_t i = 0; i < set.images(); ++i) {
          nlohmann::json r = nlohmann::json::array();
          for (int64_t row : set.image_rows[i]) r.push_back(set.captions[row]);
          c.push_back({{"key", set.image_keys[i]}, {"caption", generated[i]}, {"references", r}});
        }
        write_json_file(captions_out, c, 1);
      }
    }
  });
}

}  // namespace coca::eval
