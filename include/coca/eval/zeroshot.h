#pragma once
// Zero-shot classification: class embeddings are the renormalised mean over prompt templates
// of the normalised text features; each image is assigned the class of highest cosine
// similarity. Ranks split the images; the counts are summed, so the metrics equal the
// single-process ones.
#include <functional>
#include <string>
#include <vector>

#include "coca/eval/prompts.h"
#include "coca/model/coca.h"

namespace coca {
class BpeTokenizer;
}
namespace coca::dist {
class MpiCommunicator;
}

namespace coca::eval {

// How the ranks combine partial results (identity for one process).
struct Reducer {
  std::function<void(std::vector<double>&)> sum;                                 // in place, over ranks
  std::function<std::vector<int64_t>(const std::vector<int64_t>&)> concat;      // every rank's, in rank order
  std::function<std::vector<float>(const std::vector<float>&)> concat_f32;      // every rank's, in rank order
};
Reducer local_reducer();
Reducer mpi_reducer(const dist::MpiCommunicator& comm);

struct ZeroShotOptions {
  std::string data;            // classification shard set (labels + classnames)
  std::string templates_file;  // one template per line, '{}' = class name (default: "a photo of a {}."),
                               // or a bundled set's name (openai, simple; see coca/data/bundled.h)
  std::string classnames_file; // one name per line in label order, or a bundled list's name (imagenet1k)
                               // (default: the shards' classnames)
  std::string tokenizer;       // BPE merges (default: the one the shard index names)
  int batch_size = 64;
  int rank = 0, world = 1;
  int top_confused = 10;
};

struct ConfusedPair {
  std::string truth, predicted;
  int64_t count;
};

struct ClassAccuracy {
  std::string name;
  int64_t images = 0, top1 = 0;  // images of the class, and how many of them are right at top-1
};

struct ZeroShotResult {
  double top1 = 0, top5 = 0, mean_per_class = 0;
  int64_t images = 0, classes = 0;
  std::vector<ConfusedPair> confused;  // most frequent (true, predicted) top-1 errors
  std::vector<ClassAccuracy> per_class;  // the classes with images, in label order
};

// [C, E] normalised class embeddings.
Tensor class_embeddings(const CoCa& model, const std::vector<std::string>& classnames,
                        const std::vector<std::string>& templates, const BpeTokenizer& tok);
ZeroShotResult zeroshot(const CoCa& model, const ZeroShotOptions& opts, const Reducer& reduce);

}  // namespace coca::eval
