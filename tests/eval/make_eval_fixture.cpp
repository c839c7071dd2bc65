// Writes a small captioned shard set for the coca-eval retrieval/caption tests:
//   <out>/captions/ (2 shards; 10 images with 1-3 captions each, rows of one image sharing a
//   key; one image's rows are split between the shards and one key reappears at the end),
//   <out>/bpe.txt.gz, <out>/model.json (a micro CoCa whose vocab matches the tokenizer) and
//   <out>/model.safetensors (random weights, seed 5).
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "coca/data/bpe_trainer.h"
#include "coca/data/shard.h"
#include "coca/data/shard_index.h"
#include "coca/data/tokenizer.h"
#include "coca/model/coca.h"
#include "coca/model/weights.h"
#include "coca/tensor/random.h"

using namespace coca;
namespace fs = std::filesystem;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_eval_fixture OUTDIR\n");
    return 2;
  }
  try {
    const fs::path out = argv[1];
    fs::create_directories(out / "captions");
    const std::vector<std::string> colours = {"red", "green", "blue", "yellow", "purple"};
    const std::vector<std::string> shapes = {"square", "stripe"};
    const int S = 32, L = 16, images = 10;
    std::vector<std::vector<std::string>> captions(images);
    BpeWordCounter counter;
    for (int i = 0; i < images; ++i) {
      const std::string what = colours[i % 5] + " " + shapes[i / 5];
      captions[i] = {"a photo of a " + what + ".", "A " + what + " on a grey background", "the " + what};
      captions[i].resize(1 + i % 3);
      for (auto& c : captions[i]) counter.add_caption(c);
    }
    BpeTrainOptions bo;
    bo.vocab_size = 600;
    BpeTrainResult trained = train_bpe(counter, bo);
    write_merges_file((out / "bpe.txt.gz").string(), trained.merges);
    BpeTokenizer tok = BpeTokenizer::from_merges(trained.merges);

    // Rows: every caption of images 0..9 in order, then image 0's first caption again.
    std::vector<std::pair<int, std::string>> rows;
    for (int i = 0; i < images; ++i)
      for (auto& c : captions[i]) rows.push_back({i, c});
    rows.push_back({0, captions[0][0]});
    Generator gen(17);
    std::vector<std::vector<uint8_t>> pixels(images);
    for (auto& p : pixels) {
      p.resize(S * S * 3);
      for (auto& v : p) v = static_cast<uint8_t>(gen.below(256));
    }
    ShardIndex index;
    index.image_size = S;
    index.chunk_images = 4;
    index.context_length = L;
    index.tokenizer = {{"file", (out / "bpe.txt.gz").string()}, {"vocab_size", tok.vocab_size()},
                       {"sot", tok.sot()}, {"eot", tok.eot()}, {"pad", 0}, {"kind", "clip-bpe"}};
    index.source = {{"format", "synthetic"}};
    index.command = "make_eval_fixture";
    const size_t split = 10;  // image 5's rows (9..11) straddle the shards
    for (int s = 0; s < 2; ++s) {
      ShardLayout layout;
      layout.image_size = S;
      layout.chunk_images = 4;
      layout.context_length = L;
      const std::string file = shard_file_name(s);
      ShardWriter w((out / "captions" / file).string(), layout);
      for (size_t r = s == 0 ? 0 : split; r < (s == 0 ? split : rows.size()); ++r) {
        auto ids = tok.encode_row(rows[r].second, L);
        w.add(pixels[rows[r].first].data(), rows[r].second, "img" + std::to_string(rows[r].first), ids.data());
      }
      index.shards.push_back({file, w.size()});
      w.close();
    }
    index.total_samples = static_cast<int64_t>(rows.size());
    index.save((out / "captions").string());

    std::ofstream cfg(out / "model.json");
    cfg << R"({"embed_dim": 32,
  "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16,
                 "attentional_pool": true, "attn_pooler_queries": 5, "attn_pooler_heads": 2},
  "text_cfg": {"context_length": )" << L << R"(, "vocab_size": )" << tok.vocab_size() << R"(,
               "width": 32, "heads": 2, "layers": 2},
  "multimodal_cfg": {"context_length": )" << L << R"(, "vocab_size": )" << tok.vocab_size() << R"(,
                     "width": 32, "heads": 2, "layers": 2}})" << "\n";
    cfg.close();
    CoCa model(CocaConfig::from_file((out / "model.json").string()));
    model.initialize(5);
    save_weights(model, (out / "model.safetensors").string());
    std::printf("fixture in %s: %zu rows, %d images, vocab %d\n", out.string().c_str(), rows.size(), images,
                tok.vocab_size());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_eval_fixture: %s\n", e.what());
    return 1;
  }
  return 0;
}
