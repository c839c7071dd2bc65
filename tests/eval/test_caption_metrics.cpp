// BLEU and CIDEr-D on small examples worked out by hand (the n-gram bookkeeping is written
// out beside each expected value), plus retrieval ranks and recall summaries, and the grouping
// of COCO captions by image.
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

TEST(Retrieval, CocaKeysNameTheirImage) {
  EXPECT_EQ(image_group("coco:139:370"), "coco:139");
  EXPECT_EQ(image_group("coco:139:-1"), "coco:139");  // annotation without an id
  EXPECT_EQ(image_group("coco:139"), "coco:139");
  EXPECT_EQ(image_group("coco:x1:370"), "coco:x1:370");
  EXPECT_EQ(image_group("coco:139:"), "coco:139:");
  EXPECT_EQ(image_group("imgs/a.jpg"), "imgs/a.jpg");
  EXPECT_EQ(image_group("00000.tar/000000001"), "00000.tar/000000001");
  CaptionedSet s = group_by_key({"coco:10:100", "coco:10:101", "coco:20:200", "coco:10:102"}, {"a", "b", "c", "d"});
  EXPECT_EQ(s.images(), 2);
  EXPECT_EQ(s.image_keys, (std::vector<std::string>{"coco:10", "coco:20"}));
  EXPECT_EQ(s.image_rows, (std::vector<std::vector<int64_t>>{{0, 1, 3}, {2}}));
}

// COCO-style rows: picture A (id 10) has captions 0, 1, 2, picture B (id 20) captions 3, 4.
// Similarities, picture x caption:
//          c0   c1   c2   c3   c4
//   A     0.1  0.9  0.2  0.5  0.3
//   B     0.4  0.1  0.3  0.6  0.8
// Grouped (two images): image->text, the best of A's captions (c1) ranks 1, of B's (c4) ranks 1:
// R@1 = 1. Text->image over the two images: c0 (0.1 vs 0.4) rank 2, c1 1, c2 (0.2 vs 0.3) 2,
// c3 1, c4 1: R@1 = 3/5, mean rank 7/5, median 1.
// Per-caption keys (five "images", each its own caption's only match): image->text ranks
// c0 5 (0.1 is A's lowest), c1 1, c2 4 (behind 0.9, 0.5, 0.3), c3 2 (behind 0.8), c4 1:
// R@1 = 2/5, R@5 = 1, mean rank 13/5.
TEST(Retrieval, CocoCaptionsOfOneImageCountTogether) {
  const float sim[2][5] = {{0.1f, 0.9f, 0.2f, 0.5f, 0.3f}, {0.4f, 0.1f, 0.3f, 0.6f, 0.8f}};
  const int picture_of_row[5] = {0, 0, 0, 1, 1};
  // Text features: one-hot rows; image features: the similarity rows, so image . text = sim.
  auto features = [&](const CaptionedSet& set, coca::Tensor& image, coca::Tensor& text) {
    std::vector<float> t(25, 0.0f), im;
    for (int r = 0; r < 5; ++r) t[r * 5 + r] = 1.0f;
    for (int64_t i = 0; i < set.images(); ++i) {
      const int pic = picture_of_row[set.image_first_row[i]];
      im.insert(im.end(), sim[pic], sim[pic] + 5);
    }
    text = coca::Tensor::from_vector(t, {5, 5});
    image = coca::Tensor::from_vector(im, {set.images(), 5});
  };
  coca::Tensor image, text;
  const CaptionedSet grouped =
      group_by_key({"coco:10:100", "coco:10:101", "coco:10:102", "coco:20:200", "coco:20:201"}, {"", "", "", "", ""});
  features(grouped, image, text);
  for (int world : {1, 2}) {
    std::vector<int64_t> i2t_all, t2i_all;
    RetrievalResult g;
    for (int rank = 0; rank < world; ++rank) {
      // One process playing each rank: gather by hand (concat over ranks in order).
      Reducer collect = local_reducer();
      std::vector<int64_t>* into = nullptr;
      int call = 0;
      collect.concat = [&](const std::vector<int64_t>& v) {
        into = call++ == 0 ? &i2t_all : &t2i_all;
        into->insert(into->end(), v.begin(), v.end());
        return v;
      };
      rank_features(image, text, grouped, rank, world, collect);
    }
    g.image_to_text = summarize_ranks(i2t_all);
    g.text_to_image = summarize_ranks(t2i_all);
    EXPECT_EQ(i2t_all, (std::vector<int64_t>{1, 1})) << "world " << world;
    EXPECT_EQ(t2i_all, (std::vector<int64_t>{2, 1, 2, 1, 1})) << "world " << world;
    EXPECT_DOUBLE_EQ(g.image_to_text.r1, 1.0);
    EXPECT_DOUBLE_EQ(g.text_to_image.r1, 0.6);
    EXPECT_DOUBLE_EQ(g.text_to_image.mean_rank, 1.4);
    EXPECT_DOUBLE_EQ(g.text_to_image.median_rank, 1.0);
  }
  const CaptionedSet single = group_by_key({"a:10:100", "a:10:101", "a:10:102", "a:20:200", "a:20:201"},
                                           {"", "", "", "", ""});
  ASSERT_EQ(single.images(), 5);
  features(single, image, text);
  const RetrievalResult u = rank_features(image, text, single, 0, 1, local_reducer());
  EXPECT_EQ(u.images, 5);
  EXPECT_DOUBLE_EQ(u.image_to_text.r1, 0.4);
  EXPECT_DOUBLE_EQ(u.image_to_text.r5, 1.0);
  EXPECT_DOUBLE_EQ(u.image_to_text.mean_rank, 13.0 / 5.0);
  EXPECT_EQ(u.image_to_text.queries, 5);
}
