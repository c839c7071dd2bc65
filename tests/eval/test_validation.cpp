// coca-train's --val-data figures (coca/eval/validation.h) against direct computations on the
// same model and data: the whole-set contrastive loss against the training loss over one batch
// holding every sample, the caption loss against per-batch caption losses, the retrieval ranks
// against a brute-force count, and --val-num-samples against the same on the first rows.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "coca/data/loader.h"
#include "coca/eval/validation.h"
#include "coca/loss/coca_loss.h"
#include "data/fixtures.h"
#include "model/micro.h"

using namespace coca;
namespace fs = std::filesystem;

namespace {

class ValidationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() / ("coca_validation_" + std::to_string(::getpid()));
    // 13 samples in two shards, distinct solid images, tokens [g .. g+6], unique keys.
    coca::testing::make_indexed_shards((dir / "val").string(), {7, 6}, 16, 4, 7);
    coca::testing::make_indexed_shards((dir / "cls").string(), {8}, 16, 4, 7, 4);
    model = std::make_unique<CoCa>(test::micro_config());
    model->initialize(3);
  }
  void TearDown() override { fs::remove_all(dir); }

  // Every sample of the set (the first n), read in one batch and run through the model at once.
  struct Reference {
    Tensor tokens;
    CocaOutput out;
  };
  Reference reference(int64_t n) const {
    EvalOptions eo;
    eo.dir = (dir / "val").string();
    eo.batch_size = 1000;
    eo.image_size = 16;
    EvalReader reader(eo);
    Batch b;
    EXPECT_TRUE(reader.next(b));
    NoGradGuard no_grad;
    Reference r;
    r.tokens = b.tokens.slice(0, 0, n).contiguous();
    r.out = model->forward(b.images.slice(0, 0, n).contiguous(), r.tokens);
    return r;
  }
  eval::ValidationOptions options(int batch_size, int64_t max_samples = 0) const {
    eval::ValidationOptions o;
    o.data = (dir / "val").string();
    o.batch_size = batch_size;
    o.max_samples = max_samples;
    o.weights = {0.5, 3.0};
    return o;
  }

  fs::path dir;
  std::unique_ptr<CoCa> model;
};

// The caption loss of rows [0, n) in batches of `batch`, weighted by the batch sizes.
double per_batch_caption(const Tensor& logits, const Tensor& tokens, int64_t n, int64_t batch) {
  NoGradGuard no_grad;
  double sum = 0;
  for (int64_t b0 = 0; b0 < n; b0 += batch) {
    const int64_t b1 = std::min(n, b0 + batch);
    sum += caption_loss(logits.slice(0, b0, b1).contiguous(), tokens.slice(0, b0, b1).contiguous(), 0).item() *
           static_cast<double>(b1 - b0);
  }
  return sum / static_cast<double>(n);
}

// 1-based rank of candidate q for query q (scores strictly greater count as ahead).
std::vector<int64_t> diagonal_ranks(const Tensor& queries, const Tensor& candidates) {
  const int64_t n = queries.size(0), E = queries.size(1);
  const auto a = queries.contiguous().to_vector<float>(), b = candidates.contiguous().to_vector<float>();
  std::vector<int64_t> ranks;
  for (int64_t q = 0; q < n; ++q) {
    std::vector<double> s(n, 0.0);
    for (int64_t c = 0; c < n; ++c)
      for (int64_t e = 0; e < E; ++e) s[c] += static_cast<double>(a[q * E + e]) * b[c * E + e];
    int64_t ahead = 0;
    for (int64_t c = 0; c < n; ++c) ahead += s[c] > s[q];
    ranks.push_back(ahead + 1);
  }
  return ranks;
}

}  // namespace

TEST_F(ValidationTest, LossesMatchTheTrainingLossesOverTheWholeSet) {
  const Reference ref = reference(13);
  double want_con, want_cap;
  {
    NoGradGuard no_grad;
    // The training loss with one batch holding the whole set is the whole-set loss.
    want_con = contrastive_loss(ref.out.image_features, ref.out.text_features, ref.out.logit_scale).item();
    want_cap = per_batch_caption(ref.out.caption_logits, ref.tokens, 13, 4);
  }
  const eval::ValidationResult r = eval::validate(*model, options(4), eval::local_reducer());
  EXPECT_EQ(r.samples, 13);
  EXPECT_NEAR(r.contrastive, want_con, 1e-4 * want_con);
  EXPECT_NEAR(r.caption, want_cap, 1e-4 * want_cap);
  EXPECT_NEAR(r.loss, 0.5 * want_con + 3.0 * want_cap, 1e-4 * r.loss);
  // The batch size changes only the caption loss's batching, not the contrastive loss.
  const eval::ValidationResult r5 = eval::validate(*model, options(5), eval::local_reducer());
  EXPECT_NEAR(r5.contrastive, r.contrastive, 1e-5 * r.contrastive);
  EXPECT_NEAR(r5.caption, per_batch_caption(ref.out.caption_logits, ref.tokens, 13, 5), 1e-4 * r5.caption);
}

TEST_F(ValidationTest, RetrievalRanksMatchABruteForceCount) {
  const Reference ref = reference(13);
  const eval::ValidationResult r = eval::validate(*model, options(4), eval::local_reducer());
  for (const auto& [name, got, want] :
       {std::tuple{"image->text", r.retrieval.image_to_text, diagonal_ranks(ref.out.image_features, ref.out.text_features)},
        std::tuple{"text->image", r.retrieval.text_to_image, diagonal_ranks(ref.out.text_features, ref.out.image_features)}}) {
    double r1 = 0, r5 = 0, r10 = 0, mean = 0;
    for (int64_t k : want) r1 += k <= 1, r5 += k <= 5, r10 += k <= 10, mean += static_cast<double>(k);
    EXPECT_EQ(got.queries, 13) << name;
    EXPECT_DOUBLE_EQ(got.r1, r1 / 13) << name;
    EXPECT_DOUBLE_EQ(got.r5, r5 / 13) << name;
    EXPECT_DOUBLE_EQ(got.r10, r10 / 13) << name;
    EXPECT_DOUBLE_EQ(got.mean_rank, mean / 13) << name;
  }
  EXPECT_EQ(r.retrieval.images, 13);
  EXPECT_EQ(r.retrieval.texts, 13);
}

TEST_F(ValidationTest, MaxSamplesValidatesOnTheFirstRows) {
  const Reference ref = reference(9);
  double want_con;
  {
    NoGradGuard no_grad;
    want_con = contrastive_loss(ref.out.image_features, ref.out.text_features, ref.out.logit_scale).item();
  }
  const eval::ValidationResult r = eval::validate(*model, options(4, 9), eval::local_reducer());
  EXPECT_EQ(r.samples, 9);
  EXPECT_EQ(r.retrieval.texts, 9);
  EXPECT_NEAR(r.contrastive, want_con, 1e-4 * want_con);
  EXPECT_NEAR(r.caption, per_batch_caption(ref.out.caption_logits, ref.tokens, 9, 4), 1e-4 * r.caption);
  // A cap above the set's size is the whole set.
  EXPECT_EQ(eval::validate(*model, options(4, 100), eval::local_reducer()).samples, 13);
}

TEST_F(ValidationTest, RefusesAClassificationSetNamingZeroShot) {
  eval::ValidationOptions o = options(4);
  o.data = (dir / "cls").string();
  try {
    eval::validate(*model, o, eval::local_reducer());
    FAIL() << "a classification set was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--zeroshot-data"), std::string::npos) << e.what();
  }
}
