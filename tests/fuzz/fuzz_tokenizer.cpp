// The BPE merges file (BpeTokenizer::load: plain or gzipped, "vocab_size=" header) and encode()
// on arbitrary text. The input is the text, a NUL, then the merges file (fuzz_common.h; a
// gzipped file may hold NULs of its own). The text is encoded by the loaded tokenizer, when the
// file loads, and by a fixed small one; every id must lie in the vocabulary and every row must
// decode.
#include "coca/data/tokenizer.h"
#include "fuzz_common.h"

using namespace coca;

namespace {

void exercise(const BpeTokenizer& tok, std::string_view text) {
  const std::vector<int32_t> ids = tok.encode(text);
  for (int32_t id : ids) FUZZ_ASSERT(id >= 0 && id < tok.vocab_size());
  (void)tok.decode(ids);
  const std::vector<int32_t> row = tok.encode_row(text, 16);
  FUZZ_ASSERT(row.size() == 16 && row[0] == tok.sot());
  FUZZ_ASSERT(std::find(row.begin(), row.end(), tok.eot()) != row.end());
  (void)tok.decode_row(row);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::MemFile file("merges.txt");
  static const BpeTokenizer fixed =
      BpeTokenizer::from_merges({{"t", "h"}, {"th", "e</w>"}, {"a", "n"}, {"an", "d</w>"}, {"i", "n"}, {"in", "g</w>"}});
  const auto parts = fuzz::split_parts(data, size, 2);
  const std::string& path = file.write(parts[1]);
  const std::string_view text = parts[0];
  BpeTokenizer loaded;
  if (fuzz::expect_errors([&] { loaded = BpeTokenizer::load(path); })) exercise(loaded, text);
  exercise(fixed, text);
  return 0;
}
