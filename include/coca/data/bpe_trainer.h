#pragma once
// Learns a byte-level BPE vocabulary from captions, in the form BpeTokenizer reads: the
// captions are cleaned and pre-tokenised exactly as the tokenizer does, then the most
// frequent adjacent symbol pair is merged until the vocabulary reaches the requested size.
// Ties go to the pair whose symbols were created first (smaller ids), so a run is
// deterministic for a given caption multiset, whatever the order of the captions.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "coca/data/tokenizer.h"

namespace coca {

struct BpeTrainOptions {
  int vocab_size = 4096;   // 512 byte symbols + merges + start/end of text
  int64_t min_pair_count = 1;  // stop when the best pair is rarer than this
  // Called every few hundred merges with (merges done, merges wanted).
  std::function<void(int, int)> progress;
};

struct BpeTrainResult {
  std::vector<BpeMerge> merges;
  int vocab_size = 0;          // 512 + merges + 2; below the request when pairs ran out
  int64_t words = 0;           // pre-tokenised pieces counted
  int64_t unique_words = 0;
  bool ran_out_of_pairs = false;
};

class BpeWordCounter {
 public:
  void add_caption(const std::string& caption);
  int64_t words() const { return words_; }
  const std::unordered_map<std::string, int64_t>& counts() const { return counts_; }

 private:
  std::unordered_map<std::string, int64_t> counts_;  // piece (raw UTF-8) -> count
  int64_t words_ = 0;
};

BpeTrainResult train_bpe(const BpeWordCounter& counter, const BpeTrainOptions& options);

}  // namespace coca
