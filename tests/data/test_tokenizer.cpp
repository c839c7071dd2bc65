// Tokenizer: text clean-up against Python's own results, the pre-tokeniser against
// OpenCLIP's regex, BPE ids against hand-derived expectations, the trainer's first merges
// against a hand-worked example, and round trips on hard strings.
#include <gtest/gtest.h>
#include <zlib.h>

#include "coca/data/bpe_trainer.h"
#include "coca/data/text.h"
#include "coca/data/tokenizer.h"
#include "data/fixtures.h"

using namespace coca;
using coca::testing::TempDir;

TEST(Text, Utf8Validation) {
  EXPECT_TRUE(text::valid_utf8("plain"));
  EXPECT_TRUE(text::valid_utf8("caf\xc3\xa9 \xf0\x9f\x98\x80"));
  EXPECT_FALSE(text::valid_utf8("\xff\xfe"));
  EXPECT_FALSE(text::valid_utf8("\xc3"));              // cut multi-byte sequence
  EXPECT_FALSE(text::valid_utf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(text::valid_utf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(text::valid_utf8("\xf4\x90\x80\x80"));  // > U+10FFFF
}

TEST(Text, HtmlUnescapeMatchesPython) {
  // Expected values are what Python 3's html.unescape returns.
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"&amp;", "&"},
      {"&lt;b&gt;x&lt;/b&gt;", "<b>x</b>"},
      {"&#x41;&#66;&#67", "ABC"},
      {"&copy 2024", "\xc2\xa9 2024"},
      {"&notit;", "\xc2\xacit;"},
      {"&bogus;", "&bogus;"},
      {"&#128;", "\xe2\x82\xac"},       // Windows-1252 fix-up
      {"&#0;", "\xef\xbf\xbd"},
      {"&#x110000;", "\xef\xbf\xbd"},
      {"a & b", "a & b"},
      {"&#;", "&#;"},
      {"&amp;amp;", "&amp;"},
  };
  for (const auto& [in, want] : cases) EXPECT_EQ(text::html_unescape(in), want) << in;
}

TEST(Text, LowerMatchesPython) {
  EXPECT_EQ(text::to_lower("HeLLo"), "hello");
  EXPECT_EQ(text::to_lower("\xc3\x80\xc3\x89\xc3\x8e"), "\xc3\xa0\xc3\xa9\xc3\xae");  // ÀÉÎ
  EXPECT_EQ(text::to_lower("\xce\x91\xce\x92\xce\x93"), "\xce\xb1\xce\xb2\xce\xb3");  // ΑΒΓ
  EXPECT_EQ(text::to_lower("\xc4\xb0"), "i\xcc\x87");                                // İ -> i + U+0307
}

TEST(Text, CleanCaption) {
  EXPECT_EQ(text::clean_caption("  Hello\t\tWORLD \n "), "hello world");
  EXPECT_EQ(text::clean_caption("&amp;amp; fish"), "& fish");  // unescaped twice, as OpenCLIP
  EXPECT_EQ(text::clean_caption("\xe2\x80\x9cquoted\xe2\x80\x9d \xef\xac\x81ne"), "\"quoted\" fine");
  EXPECT_EQ(text::clean_caption("\xef\xbc\xa1\xef\xbc\xa2"), "ab");  // full-width ＡＢ
  EXPECT_EQ(text::clean_caption("bell\x07 here"), "bell here");
}

TEST(Tokenizer, PretokenizeLikeOpenClipRegex) {
  using V = std::vector<std::string>;
  EXPECT_EQ(BpeTokenizer::pretokenize("it's a dog's life"), (V{"it", "'s", "a", "dog", "'s", "life"}));
  EXPECT_EQ(BpeTokenizer::pretokenize("we'll've 3.14"), (V{"we", "'ll", "'ve", "3", ".", "1", "4"}));
  EXPECT_EQ(BpeTokenizer::pretokenize("hello!!! world"), (V{"hello", "!!!", "world"}));
  EXPECT_EQ(BpeTokenizer::pretokenize("<start_of_text>hi<end_of_text>"), (V{"<start_of_text>", "hi", "<end_of_text>"}));
  EXPECT_EQ(BpeTokenizer::pretokenize("\xe6\x97\xa5\xe6\x9c\xac x"), (V{"\xe6\x97\xa5\xe6\x9c\xac", "x"}));
  EXPECT_EQ(BpeTokenizer::pretokenize("\xf0\x9f\x98\x80\xf0\x9f\x8e\x89!"), (V{"\xf0\x9f\x98\x80\xf0\x9f\x8e\x89!"}));
  EXPECT_EQ(BpeTokenizer::pretokenize("'x"), (V{"'", "x"}));
  EXPECT_EQ(BpeTokenizer::pretokenize("\xd9\xa3\xc2\xbd"), (V{"\xd9\xa3", "\xc2\xbd"}));  // ٣ ½: one number each
}

namespace {
// Byte ids follow GPT-2's bytes_to_unicode order: printable '!'..'~' first, so 'a' (97) is 64.
int byte_of(char c) { return c - '!'; }
BpeTokenizer hello_tokenizer() {
  return BpeTokenizer::from_merges({{"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o</w>"}});
}
}  // namespace

TEST(Tokenizer, HandBuiltMerges) {
  const BpeTokenizer t = hello_tokenizer();
  EXPECT_EQ(t.vocab_size(), 512 + 4 + 2);
  EXPECT_EQ(t.sot(), 516);
  EXPECT_EQ(t.eot(), 517);
  EXPECT_EQ(BpeTokenizer::byte_id('h'), byte_of('h'));
  EXPECT_EQ(t.encode("Hello"), (std::vector<int32_t>{515}));
  // "hell": h e l l</w>; (h,e) merges, (l,l</w>) is no merge, (he,l) is none either.
  EXPECT_EQ(t.encode("hell"), (std::vector<int32_t>{512, byte_of('l'), 256 + byte_of('l')}));
  EXPECT_EQ(t.encode("oh"), (std::vector<int32_t>{byte_of('o'), 256 + byte_of('h')}));
  // A space is byte 32, which bytes_to_unicode places after the 188 printable bytes.
  EXPECT_EQ(t.encode("hello <end_of_text>"), (std::vector<int32_t>{515, 517}));
}

TEST(Tokenizer, RowsPadAndTruncateKeepingEot) {
  const BpeTokenizer t = hello_tokenizer();
  EXPECT_EQ(t.encode_row("hello", 6), (std::vector<int32_t>{516, 515, 517, 0, 0, 0}));
  EXPECT_EQ(t.encode_row("hello hello hello hello", 4), (std::vector<int32_t>{516, 515, 515, 517}));
  const Tensor b = t.encode_batch({"hello", "oh", ""}, 5);
  ASSERT_EQ(b.shape(), (Shape{3, 5}));
  EXPECT_EQ(b.to_vector<int32_t>(),
            (std::vector<int32_t>{516, 515, 517, 0, 0, 516, byte_of('o'), 256 + byte_of('h'), 517, 0, 516, 517, 0, 0, 0}));
  EXPECT_EQ(t.decode({515}), "hello ");
  EXPECT_EQ(t.decode_row(t.encode_row("hello oh", 8)), "hello oh");
  EXPECT_THROW(t.decode({9999}), Error);
}

TEST(Tokenizer, TrainerFirstMergesOnTextbookExample) {
  // Sennrich et al.'s example: low x5, lower x2, newest x6, widest x3. Pair counts: (e,s)=9
  // and (s,t</w>)=9 tie and go to the smaller ids, (e,s); then (es,t</w>)=9; then (l,o)=7;
  // then (n,e), (e,w), (w,est</w>) tie at 6 and (e,w) has the smallest ids.
  BpeWordCounter c;
  for (int i = 0; i < 5; ++i) c.add_caption("low");
  for (int i = 0; i < 2; ++i) c.add_caption("lower");
  for (int i = 0; i < 6; ++i) c.add_caption("newest");
  for (int i = 0; i < 3; ++i) c.add_caption("widest");
  BpeTrainOptions opt;
  opt.vocab_size = 512 + 4 + 2;
  const BpeTrainResult r = train_bpe(c, opt);
  ASSERT_EQ(r.merges.size(), 4u);
  EXPECT_EQ(r.merges[0], (BpeMerge{"e", "s"}));
  EXPECT_EQ(r.merges[1], (BpeMerge{"es", "t</w>"}));
  EXPECT_EQ(r.merges[2], (BpeMerge{"l", "o"}));
  EXPECT_EQ(r.merges[3], (BpeMerge{"e", "w"}));
  EXPECT_EQ(r.unique_words, 4);
  EXPECT_EQ(r.words, 16);
}

TEST(Tokenizer, TrainWriteLoadRoundTrip) {
  TempDir dir("tok");
  BpeWordCounter c;
  const std::vector<std::string> captions = {
      "a photo of a cat", "a photo of a dog", "the cat sat on the mat", "grinning face with big eyes",
      "face with tears of joy", "red heart", "thumbs up sign", "smiling face with sunglasses",
      "flag of japan", "a photo of a rocket"};
  for (int rep = 0; rep < 3; ++rep)
    for (const auto& s : captions) c.add_caption(s);
  BpeTrainOptions opt;
  opt.vocab_size = 560;
  const BpeTrainResult r = train_bpe(c, opt);
  ASSERT_EQ(r.vocab_size, 560);
  const std::string path = dir.str("vocab.txt.gz");
  write_merges_file(path, r.merges);
  const auto bytes = coca::testing::read_file(path);
  ASSERT_GE(bytes.size(), 2u);
  EXPECT_EQ(bytes[0], 0x1f);  // gzip magic
  EXPECT_EQ(bytes[1], 0x8b);
  const BpeTokenizer t = BpeTokenizer::load(path);
  EXPECT_EQ(t.vocab_size(), 560);
  EXPECT_EQ(t.sot(), 558);
  EXPECT_EQ(t.eot(), 559);
  EXPECT_EQ(t.merges(), r.merges);
  // Frequent words become single tokens.
  EXPECT_EQ(t.encode("photo").size(), 1u);
  // OpenCLIP semantics: an explicit vocab_size takes only the first merges of the file.
  const BpeTokenizer small = BpeTokenizer::load(path, 520);
  EXPECT_EQ(small.vocab_size(), 520);
  EXPECT_EQ(small.num_merges(), 6);
  EXPECT_THROW(BpeTokenizer::load(path, 9000), Error);
  EXPECT_THROW(BpeTokenizer::load(dir.str("missing.gz")), Error);
}

TEST(Tokenizer, HardStringsRoundTrip) {
  BpeWordCounter c;
  c.add_caption("the quick brown fox jumps over the lazy dog");
  BpeTrainOptions opt;
  opt.vocab_size = 600;
  const BpeTokenizer t = BpeTokenizer::from_merges(train_bpe(c, opt).merges);
  auto squash = [](std::string s) {
    s.erase(std::remove(s.begin(), s.end(), ' '), s.end());
    return s;
  };
  const std::vector<std::string> hard = {
      "The Quick BROWN fox",
      "caf\xc3\xa9 na\xc3\xafve \xc3\x85ngstr\xc3\xb6m stra\xc3\x9f" "e",
      "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xed\x95\x9c\xea\xb5\xad\xec\x96\xb4 \xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82",
      "emoji \xf0\x9f\x98\x80\xf0\x9f\x8e\x89 zwj \xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7",
      "&lt;b&gt;bold&lt;/b&gt; &amp; &#x263A;",
      "supercalifragilisticexpialidocious" + std::string(300, 'z'),
      "don't won't they'll I'd",
      "tabs\tand\nnewlines   everywhere",
  };
  for (const auto& s : hard) {
    const std::vector<int32_t> ids = t.encode(s);
    for (int32_t id : ids) ASSERT_TRUE(id >= 0 && id < t.sot()) << s;
    EXPECT_EQ(squash(t.decode(ids)), squash(text::clean_caption(s))) << s;
  }
  // Over-long caption: truncated to the context with end-of-text last, no padding.
  const std::string long_caption(5000, 'q');
  const std::vector<int32_t> row = t.encode_row(long_caption + " tail", 32);
  ASSERT_EQ(row.size(), 32u);
  EXPECT_EQ(row.front(), t.sot());
  EXPECT_EQ(row.back(), t.eot());
  EXPECT_EQ(std::count(row.begin(), row.end(), 0), 0);
  // Empty text: start and end only.
  EXPECT_EQ(t.encode_row("", 4), (std::vector<int32_t>{t.sot(), t.eot(), 0, 0}));
}
