// Writes a small synthetic training set for the coca-train tests, with everything they need:
//   <out>/train/ (4 shards with tokens), <out>/eval/ (classification shards), <out>/bpe.txt.gz,
//   <out>/model.json (a micro CoCa whose vocab_size matches the trained tokenizer).
// With --uneven N1,N2,... also <out>/uneven/: one shard per listed sample count. With
// --context-length L the tokens are L long (default 16), for a model config with that context.
// Images are class-coloured blocks with noise; captions name the colour and the shape, so the
// loss has something to learn and zero-shot accuracy above chance is reachable.
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "coca/data/bpe_trainer.h"
#include "coca/data/shard.h"
#include "coca/data/shard_index.h"
#include "coca/data/tokenizer.h"
#include "coca/tensor/random.h"

using namespace coca;
namespace fs = std::filesystem;

int main(int argc, char** argv) {
  std::vector<int> uneven;
  int L = 16;
  bool usage = argc < 2 || argc % 2 != 0;
  for (int a = 2; a + 1 < argc && !usage; a += 2) {
    const std::string flag = argv[a], value = argv[a + 1];
    if (flag == "--uneven") {
      for (size_t pos = 0; pos <= value.size();) {
        const size_t comma = std::min(value.find(',', pos), value.size());
        uneven.push_back(std::stoi(value.substr(pos, comma - pos)));
        pos = comma + 1;
      }
    } else if (flag == "--context-length") {
      L = std::stoi(value);
    } else {
      usage = true;
    }
  }
  if (usage) {
    std::fprintf(stderr, "usage: make_train_fixture OUTDIR [--uneven N1,N2,...] [--context-length L]\n");
    return 2;
  }
  const fs::path out = argv[1];
  fs::create_directories(out / "train");
  fs::create_directories(out / "eval");
  const std::vector<std::string> colours = {"red", "green", "blue", "yellow"};
  const std::vector<std::string> shapes = {"square", "stripe"};
  const uint8_t rgb[4][3] = {{220, 30, 30}, {30, 200, 40}, {30, 60, 220}, {230, 220, 40}};
  std::vector<std::string> classnames;
  for (auto& c : colours)
    for (auto& s : shapes) classnames.push_back(c + " " + s);
  const int S = 32, K = static_cast<int>(classnames.size());

  BpeWordCounter counter;
  for (auto& c : classnames) counter.add_caption("a photo of a " + c + " on a grey background");
  BpeTrainOptions bo;
  bo.vocab_size = 600;
  BpeTrainResult trained = train_bpe(counter, bo);
  write_merges_file((out / "bpe.txt.gz").string(), trained.merges);
  BpeTokenizer tok = BpeTokenizer::from_merges(trained.merges);

  Generator gen(17);
  auto draw = [&](int cls, std::vector<uint8_t>& img) {
    img.assign(S * S * 3, 128);
    const int c = cls / 2, shape = cls % 2;
    for (int y = 0; y < S; ++y)
      for (int x = 0; x < S; ++x) {
        const bool on = shape == 0 ? (x >= 8 && x < 24 && y >= 8 && y < 24) : ((x / 4) % 2 == 0);
        for (int ch = 0; ch < 3; ++ch) {
          const int base = on ? rgb[c][ch] : 128;
          const int v = base + static_cast<int>(gen.below(31)) - 15;
          img[(y * S + x) * 3 + ch] = static_cast<uint8_t>(std::min(255, std::max(0, v)));
        }
      }
  };
  auto write_set = [&](const fs::path& dir, const std::vector<int>& sizes, bool labels) {
    fs::create_directories(dir);
    ShardIndex index;
    index.image_size = S;
    index.chunk_images = 8;
    index.context_length = L;
    index.tokenizer = {{"file", (out / "bpe.txt.gz").string()}, {"vocab_size", tok.vocab_size()},
                       {"sot", tok.sot()}, {"eot", tok.eot()}, {"pad", 0}, {"kind", "clip-bpe"}};
    index.source = {{"format", "synthetic"}};
    index.command = "make_train_fixture";
    if (labels) index.classnames = classnames;
    std::vector<uint8_t> img;
    int64_t n = 0;
    for (size_t s = 0; s < sizes.size(); ++s) {
      const int per_shard = sizes[s];
      ShardLayout layout;
      layout.image_size = S;
      layout.chunk_images = 8;
      layout.context_length = L;
      layout.labels = labels;
      if (labels) layout.classnames = classnames;
      const std::string file = shard_file_name(static_cast<int64_t>(s));
      ShardWriter w((dir / file).string(), layout);
      for (int i = 0; i < per_shard; ++i, ++n) {
        const int cls = static_cast<int>(gen.below(K));
        draw(cls, img);
        const std::string caption = "a photo of a " + classnames[cls] + " on a grey background";
        auto ids = tok.encode_row(caption, L);
        w.add(img.data(), caption, "sample" + std::to_string(n), ids.data(), labels ? cls : -1);
      }
      w.close();
      index.shards.push_back({file, per_shard});
    }
    index.total_samples = n;
    index.save(dir.string());
  };
  write_set(out / "train", {64, 64, 64, 64}, false);
  write_set(out / "eval", {64}, true);
  if (!uneven.empty()) write_set(out / "uneven", uneven, false);

  std::ofstream cfg(out / "model.json");
  cfg << R"({"embed_dim": 32,
  "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16,
                 "attentional_pool": true, "attn_pooler_queries": 5, "attn_pooler_heads": 2},
  "text_cfg": {"context_length": )" << L << R"(, "vocab_size": )" << tok.vocab_size() << R"(,
               "width": 32, "heads": 2, "layers": 1},
  "multimodal_cfg": {"context_length": )" << L << R"(, "vocab_size": )" << tok.vocab_size() << R"(,
                     "width": 32, "heads": 2, "layers": 1}})" << "\n";
  std::printf("fixture in %s: vocab %d, %d classes\n", out.string().c_str(), tok.vocab_size(), K);
  return 0;
}
