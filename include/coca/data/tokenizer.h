#pragma once
// BpeTokenizer: OpenCLIP's SimpleTokenizer in C++. It reads a CLIP-format merges file (the
// gzipped bpe_simple_vocab_16e6.txt.gz layout: one header line, then one "left right" merge
// per line, symbols written in the byte-to-unicode alphabet with "</w>" ending a word) and
// encodes as OpenCLIP does: clean-up, lower-case, the same pre-tokenisation regex, byte-level
// BPE, start/end-of-text tokens, pad 0, truncation that keeps end-of-text last.
//
// Ids: 0..255 single bytes, 256..511 single bytes ending a word, then one id per merge in
// file order, then start-of-text (vocab_size - 2) and end-of-text (vocab_size - 1).
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "coca/tensor/tensor.h"

namespace coca {

using BpeMerge = std::pair<std::string, std::string>;

class BpeTokenizer {
 public:
  static constexpr int kOpenClipVocabSize = 49408;
  static constexpr int kBaseSymbols = 512;  // 256 bytes, then the same 256 ending a word

  BpeTokenizer() = default;
  BpeTokenizer(const BpeTokenizer& o) : BpeTokenizer() { *this = o; }
  BpeTokenizer& operator=(const BpeTokenizer& o);

  // Reads a merges file (gzipped or plain). vocab_size 0 takes "vocab_size=N" from the
  // header line that coca-tokenizer train writes, else OpenCLIP's 49408.
  static BpeTokenizer load(const std::string& path, int vocab_size = 0);
  // Builds from merges in memory; vocab_size = 512 + merges + 2.
  static BpeTokenizer from_merges(const std::vector<BpeMerge>& merges);

  // Token ids of the cleaned text, without start/end tokens.
  std::vector<int32_t> encode(std::string_view text) const;
  // [sot] + encode(text) + [eot], truncated to context_length with eot kept last, padded with 0.
  std::vector<int32_t> encode_row(std::string_view text, int context_length) const;
  // int32 [N, context_length], one encode_row per text.
  Tensor encode_batch(const std::vector<std::string>& texts, int context_length) const;
  // Exactly OpenCLIP's decode: every id's text, bytes decoded as UTF-8 with replacement,
  // "</w>" turned into a space.
  std::string decode(const std::vector<int32_t>& ids) const;
  // A padded row back to its caption: start-of-text skipped, stops at end-of-text, trimmed.
  std::string decode_row(const std::vector<int32_t>& row) const;

  int vocab_size() const { return static_cast<int>(vocab_.size()); }
  int sot() const { return vocab_size() - 2; }
  int eot() const { return vocab_size() - 1; }
  static constexpr int pad() { return 0; }
  int num_merges() const { return vocab_size() - kBaseSymbols - 2; }
  const std::vector<BpeMerge>& merges() const { return merges_; }
  const std::string& token_text(int32_t id) const;  // in the byte-to-unicode alphabet

  // OpenCLIP's pre-tokenisation of already-cleaned text, each piece as UTF-8.
  static std::vector<std::string> pretokenize(std::string_view cleaned);
  // Byte `b` in the byte-to-unicode alphabet (UTF-8), as GPT-2/CLIP define it.
  static const std::string& byte_symbol(uint8_t b);
  // The id of byte `b` as a single symbol (add 256 for its end-of-word form).
  static int byte_id(uint8_t b);

 private:
  void build(const std::vector<BpeMerge>& merges);
  std::vector<int32_t> bpe(std::string_view piece) const;

  std::vector<std::string> vocab_;
  std::vector<BpeMerge> merges_;
  std::unordered_map<std::string, int32_t> encoder_;
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> ranks_;  // (left,right) -> (rank, merged id)
  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

// Writes merges in the CLIP layout (gzip when path ends in .gz), atomically. The header
// line records vocab_size = 512 + merges + 2 for BpeTokenizer::load.
void write_merges_file(const std::string& path, const std::vector<BpeMerge>& merges);

}  // namespace coca
