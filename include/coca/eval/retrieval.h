#pragma once
// Image-text retrieval on a captioned shard set. Rows whose keys name the same image are
// captions of one image (see image_group): the image is encoded once (from its first row), every
// row's caption is a text. For COCO this is the standard 5k-image protocol: 5,000 images,
// about 25,000 captions, an image query hits when any of its captions ranks high. Image-to-text: the rank of the best-scored caption of the image among all
// captions; text-to-image: the rank of its image among all images. Ranks are 1-based; a
// candidate scoring the same as the correct one counts as ahead of it only when its index is
// lower, so the results are deterministic. Recall@k = fraction of queries with rank <= k.
// Ranks split the rows; features are all-gathered, each rank scores a slice of the queries
// and the ranks are gathered, so the metrics equal the single-process ones.
#include <memory>
#include <string>
#include <vector>

#include "coca/data/loader.h"
#include "coca/data/tokenizer.h"
#include "coca/eval/zeroshot.h"

namespace coca {
struct ShardIndex;
}

namespace coca::eval {

// The image a row's key names: `coco:<image_id>` for coca-shard's COCO caption keys
// `coco:<image_id>:<annotation_id>`, the key itself otherwise (rows of a CSV or WebDataset
// caption the same image when they share the image path / key).
std::string image_group(const std::string& key);

// The rows of a captioned shard set, grouped into images by image_group(key).
struct CaptionedSet {
  std::vector<std::string> keys, captions;      // per row
  std::vector<std::string> image_keys;          // image_group of each image's rows
  std::vector<int64_t> row_image;               // image of each row (images in first-appearance order)
  std::vector<int64_t> image_first_row;         // the row each image is encoded from
  std::vector<std::vector<int64_t>> image_rows; // every row (caption) of each image
  int64_t rows() const { return static_cast<int64_t>(keys.size()); }
  int64_t images() const { return static_cast<int64_t>(image_first_row.size()); }
};
CaptionedSet group_by_key(std::vector<std::string> keys, std::vector<std::string> captions);
// Reads every shard's keys and captions (not the images); max_rows > 0: the first max_rows rows.
CaptionedSet load_captioned_set(const std::string& dir, int64_t max_rows = 0);

// The tokenizer to re-tokenize a captioned set's captions with when its stored tokens do not
// fit the model (another context length, or none stored); null when they fit. `given` and
// `flag` as resolve_tokenizer takes them; a vocabulary other than the model's is an Error
// starting with `what`.
std::unique_ptr<BpeTokenizer> caption_tokenizer(const CoCa& model, const ShardIndex& index, const std::string& given,
                                                const std::string& dir, const char* flag, const std::string& what);
// A batch's tokens: as stored, or its captions (rows of `set`) encoded by `tok` when not null.
Tensor caption_tokens(const Batch& b, const CaptionedSet& set, const BpeTokenizer* tok, int context_length);

// 1-based rank of the best-scored candidate among `correct` in `scores` [C].
int64_t rank_of_best(const float* scores, int64_t C, const std::vector<int64_t>& correct);

struct RecallMetrics {
  double r1 = 0, r5 = 0, r10 = 0, mean_rank = 0, median_rank = 0;
  int64_t queries = 0;
};
// Median as numpy's: the mean of the two middle ranks for an even count.
RecallMetrics summarize_ranks(const std::vector<int64_t>& ranks);

struct RetrievalOptions {
  std::string data;       // captioned shard set
  std::string tokenizer;  // only needed when the shards' tokens do not fit the model
  int batch_size = 64;
  int rank = 0, world = 1;
};

struct RetrievalResult {
  RecallMetrics image_to_text, text_to_image;
  int64_t images = 0, texts = 0;
};

RetrievalResult retrieval(const CoCa& model, const RetrievalOptions& opts, const Reducer& reduce);
// The metrics from features already computed (every rank holds all of them): image [images, E]
// (row i: image i of `set`), text [rows, E]. Each rank scores its slice of the queries; the
// ranks are gathered with `reduce`.
RetrievalResult rank_features(const Tensor& image, const Tensor& text, const CaptionedSet& set, int rank, int world,
                              const Reducer& reduce);

}  // namespace coca::eval
