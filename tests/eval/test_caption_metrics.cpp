// BLEU and CIDEr-D on small examples worked out by hand (the n-gram bookkeeping is written
// out beside each expected value), plus retrieval ranks and recall summaries.
#include <gtest/gtest.h>

#include <cmath>

#include "coca/eval/caption_metrics.h"
#include "coca/eval/retrieval.h"

using namespace coca::eval;

namespace {

Words w(const std::string& s) { return caption_words(s); }

}  // namespace

TEST(CaptionWords, LowerCasesAndStripsPunctuation) {
  EXPECT_EQ(caption_words("A man, riding a HORSE!"), (Words{"a", "man", "riding", "a", "horse"}));
  EXPECT_EQ(caption_words("  two\tdogs... (playing) "), (Words{"two", "dogs", "playing"}));
  EXPECT_TRUE(caption_words(" .,! ").empty());
}

TEST(Bleu, CorpusLevelClippedPrecisionAndClosestBrevityPenalty) {
  // A: "the cat sat on the mat" vs {"the cat sat on a mat", "a cat is on the mat"}
  //   1-grams: the x2 (max in one ref 1) -> 1, cat sat on mat -> 4: 5 of 6
  //   2-grams: the cat, cat sat, sat on (ref 1), on the, the mat (ref 2): 5 of 5
  //   3-grams: the cat sat, cat sat on, on the mat; not sat on the: 3 of 4
  //   4-grams: the cat sat on: 1 of 3. Test length 6, closest reference length 6.
  // B: "a dog runs" vs {"a dog runs fast", "the dog is running"}
  //   3 of 3, 2 of 2, 1 of 1, 0 of 0. Test length 3, closest reference length 4.
  // Corpus: correct 8 7 4 1, guesses 9 7 5 3, test length 9 < reference length 10.
  std::vector<Words> c = {w("the cat sat on the mat"), w("a dog runs")};
  std::vector<std::vector<Words>> r = {{w("the cat sat on a mat"), w("a cat is on the mat")},
                                       {w("a dog runs fast"), w("the dog is running")}};
  BleuScore s = corpus_bleu(c, r);
  const double bp = std::exp(1.0 - 10.0 / 9.0);
  EXPECT_NEAR(s.bleu[0], 8.0 / 9.0 * bp, 1e-9);
  EXPECT_NEAR(s.bleu[1], std::sqrt(8.0 / 9.0 * 7.0 / 7.0) * bp, 1e-9);
  EXPECT_NEAR(s.bleu[2], std::cbrt(8.0 / 9.0 * 1.0 * 4.0 / 5.0) * bp, 1e-9);
  EXPECT_NEAR(s.bleu[3], std::pow(8.0 / 9.0 * 1.0 * 4.0 / 5.0 * 1.0 / 3.0, 0.25) * bp, 1e-9);
  EXPECT_EQ(s.test_length, 9);
  EXPECT_EQ(s.ref_length, 10);
}

TEST(Bleu, ClosestLengthTiesGoToTheShorterReference) {
  // Test length 5; references of 4 and 6 are equally close: 4 is taken, so no brevity
  // penalty (taking 6 would multiply by exp(1 - 6/5)).
  BleuScore s = corpus_bleu({w("one two three four five")},
                            {{w("one two three four"), w("one two three four five six")}});
  EXPECT_EQ(s.ref_length, 4);
  EXPECT_NEAR(s.bleu[0], 1.0, 1e-9);
  EXPECT_NEAR(s.bleu[3], 1.0, 1e-9);
}

TEST(Bleu, NoFourGramMatchGivesAlmostZero) {
  BleuScore s = corpus_bleu({w("a b c d")}, {{w("d c b a")}});
  EXPECT_NEAR(s.bleu[0], 1.0, 1e-9);  // every unigram matches
  EXPECT_LT(s.bleu[3], 1e-3);         // (1e-15)^(1/4) smoothing, as pycocoevalcap
}

TEST(Bleu, RejectsImageWithoutReferences) {
  EXPECT_THROW(corpus_bleu({w("a b")}, {{}}), coca::Error);
  EXPECT_THROW(corpus_bleu({w("a b")}, {}), coca::Error);
}

TEST(CiderD, IdenticalAndDisjointCaptions) {
  // Two images, so idf = log 2 - log df. Image 1: "a cat" vs {"a cat"}; image 2: "a dog" vs
  // {"a bird"}. df: a 2 (idf 0), cat, a cat, bird, a bird 1 (idf log 2); dog, a dog unseen
  // (df taken as 1, idf log 2).
  // Image 1: 1-gram cosine (0*0 + g*g) / (g*g) = 1, 2-gram 1, no 3/4-grams: mean 0.5, x10 = 5.
  // Image 2: no shared n-gram with weight: 0.
  CiderScore s = cider_d({w("a cat"), w("a dog")}, {{w("a cat")}, {w("a bird")}});
  ASSERT_EQ(s.per_image.size(), 2u);
  EXPECT_NEAR(s.per_image[0], 5.0, 1e-9);
  EXPECT_NEAR(s.per_image[1], 0.0, 1e-12);
  EXPECT_NEAR(s.mean, 2.5, 1e-9);
}

TEST(CiderD, ClippingLengthPenaltyAndMeanOverReferences) {
  // Image 1: "cat cat" vs {"cat", "a cat sat"}; image 2 as above ("a dog" vs {"a bird"}).
  // g = log 2. df: a 2 (idf 0); everything else in image 1's references 1 (idf g).
  // Candidate: cat tf 2 -> 2g (norm 2g); "cat cat" unseen -> g (norm g); 1 bigram.
  // Ref "cat": cat g (norm g); 0 bigrams, so delta = 1.
  //   1-gram: min(2g, g) * g / (2g * g) = 1/2 (clipped); 2-gram: ref has none -> 0.
  // Ref "a cat sat": a 0, cat g, sat g (norm sqrt2 g); 2 bigrams, delta = -1.
  //   1-gram: min(2g, g) * g / (2g * sqrt2 g) = 1/(2 sqrt2); 2-gram "cat cat" absent -> 0.
  // Each times exp(-1/72); sum over refs, mean over n = 1..4, / 2 refs, x 10.
  CiderScore s = cider_d({w("cat cat"), w("a dog")}, {{w("cat"), w("a cat sat")}, {w("a bird")}});
  const double e = std::exp(-1.0 / 72.0);
  const double img1 = 10.0 * (0.5 * e + e / (2.0 * std::sqrt(2.0))) / 4.0 / 2.0;
  EXPECT_NEAR(s.per_image[0], img1, 1e-9);
  EXPECT_NEAR(s.mean, img1 / 2.0, 1e-9);
}

TEST(Retrieval, RankOfBestCorrectCandidateWithIndexTieBreak) {
  const float scores[] = {0.1f, 0.9f, 0.5f, 0.9f};
  EXPECT_EQ(rank_of_best(scores, 4, {2}), 3);     // two 0.9s ahead
  EXPECT_EQ(rank_of_best(scores, 4, {3}), 2);     // the equal score at index 1 is ahead
  EXPECT_EQ(rank_of_best(scores, 4, {2, 3}), 2);  // best correct is index 3
  EXPECT_EQ(rank_of_best(scores, 4, {3, 1}), 1);  // best correct is index 1
  EXPECT_EQ(rank_of_best(scores, 4, {0}), 4);
  EXPECT_THROW(rank_of_best(scores, 4, {}), coca::Error);
  EXPECT_THROW(rank_of_best(scores, 4, {4}), coca::Error);
}

TEST(Retrieval, RecallAndRanks) {
  RecallMetrics m = summarize_ranks({1, 3, 7, 12});
  EXPECT_DOUBLE_EQ(m.r1, 0.25);
  EXPECT_DOUBLE_EQ(m.r5, 0.5);
  EXPECT_DOUBLE_EQ(m.r10, 0.75);
  EXPECT_DOUBLE_EQ(m.mean_rank, 23.0 / 4.0);
  EXPECT_DOUBLE_EQ(m.median_rank, 5.0);  // (3 + 7) / 2
  EXPECT_EQ(m.queries, 4);
  EXPECT_DOUBLE_EQ(summarize_ranks({2, 1, 9}).median_rank, 2.0);
}

TEST(Retrieval, GroupsRowsByKey) {
  CaptionedSet s = group_by_key({"k1", "k2", "k1", "k3", "k2"}, {"a", "b", "c", "d", "e"});
  EXPECT_EQ(s.images(), 3);
  EXPECT_EQ(s.row_image, (std::vector<int64_t>{0, 1, 0, 2, 1}));
  EXPECT_EQ(s.image_first_row, (std::vector<int64_t>{0, 1, 3}));
  EXPECT_EQ(s.image_rows, (std::vector<std::vector<int64_t>>{{0, 2}, {1, 4}, {3}}));
  EXPECT_THROW(group_by_key({"k1"}, {}), coca::Error);
}
