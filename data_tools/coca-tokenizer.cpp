// coca-tokenizer: CLIP-format byte-level BPE. `train` learns merges from captions and
// writes them in OpenCLIP's bpe_simple_vocab_16e6.txt.gz layout; `encode`/`decode`/`info`
// use any such file (OpenCLIP's own or one written by train).
#include <boost/program_options.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "coca/data/bpe_trainer.h"
#include "coca/data/progress.h"
#include "coca/data/shard.h"
#include "coca/data/shard_index.h"
#include "coca/data/tokenizer.h"

namespace po = boost::program_options;
using namespace coca;

namespace {

const char* kUsage =
    "coca-tokenizer: CLIP-format byte-level BPE tokenizer.\n"
    "Usage:\n"
    "  coca-tokenizer train --input captions.txt [--input more.txt] [--shards DIR] --vocab-size 4096 --output V.txt.gz\n"
    "  coca-tokenizer encode --vocab V.txt.gz [--context-length 77] [TEXT ...]   (stdin lines when no TEXT)\n"
    "  coca-tokenizer decode --vocab V.txt.gz ID [ID ...]\n"
    "  coca-tokenizer info --vocab V.txt.gz\n";

int train(const po::variables_map& vm) {
  COCA_CHECK(vm.count("output"), "train needs --output");
  BpeWordCounter counter;
  int64_t captions = 0;
  if (vm.count("input")) {
    for (const auto& path : vm["input"].as<std::vector<std::string>>()) {
      std::ifstream f(path);
      COCA_CHECK(f.good(), "cannot open caption file ", path);
      for (std::string line; std::getline(f, line);) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        counter.add_caption(line);
        ++captions;
      }
    }
  }
  if (vm.count("shards")) {
    for (const auto& dir : vm["shards"].as<std::vector<std::string>>()) {
      const ShardIndex idx = ShardIndex::load(dir);
      for (size_t i = 0; i < idx.shards.size(); ++i) {
        ShardReader r(idx.shard_path(dir, i));
        for (const auto& c : r.read_captions(0, r.size())) {
          counter.add_caption(c);
          ++captions;
        }
      }
    }
  }
  COCA_CHECK(captions > 0, "train: no captions (give --input files or --shards directories)");
  BpeTrainOptions opt;
  opt.vocab_size = vm["vocab-size"].as<int>();
  opt.min_pair_count = vm["min-pair-count"].as<int64_t>();
  Progress progress("coca-tokenizer train", opt.vocab_size - BpeTokenizer::kBaseSymbols - 2,
                    !vm["quiet"].as<bool>(), "merges");
  opt.progress = [&](int done, int) { progress.update(done); };
  const BpeTrainResult res = train_bpe(counter, opt);
  progress.update(static_cast<int64_t>(res.merges.size()));
  progress.finish();
  const std::string out = vm["output"].as<std::string>();
  write_merges_file(out, res.merges);
  std::printf("coca-tokenizer: %lld captions, %lld words (%lld distinct), %zu merges, vocab_size %d -> %s\n",
              static_cast<long long>(captions), static_cast<long long>(res.words),
              static_cast<long long>(res.unique_words), res.merges.size(), res.vocab_size, out.c_str());
  if (res.ran_out_of_pairs)
    std::fprintf(stderr, "coca-tokenizer: warning: the captions ran out of pairs to merge; vocab_size is %d, "
                 "not the %d asked for\n", res.vocab_size, opt.vocab_size);
  return 0;
}

int encode(const po::variables_map& vm, const std::vector<std::string>& texts) {
  COCA_CHECK(vm.count("vocab"), "encode needs --vocab");
  const BpeTokenizer tok = BpeTokenizer::load(vm["vocab"].as<std::string>());
  const int L = vm["context-length"].as<int>();
  auto one = [&](const std::string& t) {
    const std::vector<int32_t> ids = L > 0 ? tok.encode_row(t, L) : tok.encode(t);
    for (size_t i = 0; i < ids.size(); ++i) std::printf("%s%d", i ? " " : "", ids[i]);
    std::printf("\n");
  };
  if (texts.empty())
    for (std::string line; std::getline(std::cin, line);) one(line);
  else
    for (const auto& t : texts) one(t);
  return 0;
}

int decode(const po::variables_map& vm, const std::vector<std::string>& args) {
  COCA_CHECK(vm.count("vocab"), "decode needs --vocab");
  const BpeTokenizer tok = BpeTokenizer::load(vm["vocab"].as<std::string>());
  std::vector<int32_t> ids;
  for (const auto& a : args) {
    char* end = nullptr;
    const long v = std::strtol(a.c_str(), &end, 10);
    COCA_CHECK(end && *end == '\0', "decode: '", a, "' is not an integer id");
    ids.push_back(static_cast<int32_t>(v));
  }
  std::printf("%s\n", tok.decode_row(ids).c_str());
  return 0;
}

int info(const po::variables_map& vm) {
  COCA_CHECK(vm.count("vocab"), "info needs --vocab");
  const BpeTokenizer tok = BpeTokenizer::load(vm["vocab"].as<std::string>());
  std::printf("vocab_size %d\nmerges %d\nsot %d\neot %d\npad %d\n", tok.vocab_size(), tok.num_merges(), tok.sot(),
              tok.eot(), BpeTokenizer::pad());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string command;
    std::vector<std::string> args;
    po::options_description desc("Options");
    desc.add_options()("help,h", "show this help")
        ("command", po::value(&command), "train | encode | decode | info")
        ("args", po::value(&args), "texts (encode) or ids (decode)")
        ("input", po::value<std::vector<std::string>>(), "train: caption text file, one caption a line (repeatable)")
        ("shards", po::value<std::vector<std::string>>(), "train: shard directory whose captions to use (repeatable)")
        ("vocab-size", po::value<int>()->default_value(4096), "train: vocabulary size (512 bytes + merges + 2)")
        ("min-pair-count", po::value<int64_t>()->default_value(1), "train: stop when the best pair is rarer")
        ("output", po::value<std::string>(), "train: merges file to write (.gz for gzip)")
        ("vocab", po::value<std::string>(), "merges file to use (gzipped or plain)")
        ("context-length", po::value<int>()->default_value(0),
         "encode: pad/truncate to this length with start/end tokens (0: bare ids)")
        ("quiet", po::bool_switch()->default_value(false), "no progress lines");
    po::positional_options_description pos;
    pos.add("command", 1).add("args", -1);
    po::variables_map vm;
    po::store(po::command_line_parser(argc, argv).options(desc).positional(pos).run(), vm);
    po::notify(vm);
    if (vm.count("help") || command.empty()) {
      std::cout << kUsage << desc << "\n";
      return command.empty() && !vm.count("help") ? 1 : 0;
    }
    if (command == "train") return train(vm);
    if (command == "encode") return encode(vm, args);
    if (command == "decode") return decode(vm, args);
    if (command == "info") return info(vm);
    throw Error(str_cat("unknown command '", command, "' (train, encode, decode, info)"));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "coca-tokenizer: error: %s\n", e.what());
    return 1;
  }
}
