#include "coca/data/bpe_trainer.h"

#include <algorithm>
#include <set>
#include <tuple>
#include <unordered_set>

#include "coca/data/text.h"

namespace coca {
namespace {

uint64_t key_of(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

// Pair statistics with an ordered view for "most frequent, then smallest ids".
class PairTable {
 public:
  void add(int32_t a, int32_t b, int64_t delta, int32_t word) {
    const uint64_t k = key_of(a, b);
    int64_t& c = count_[k];
    if (c > 0) order_.erase({-c, a, b});
    c += delta;
    if (c > 0) order_.insert({-c, a, b});
    if (delta > 0) where_[k].insert(word);
  }
  bool empty() const { return order_.empty(); }
  std::tuple<int64_t, int32_t, int32_t> best() const {
    const auto& t = *order_.begin();
    return {-std::get<0>(t), std::get<1>(t), std::get<2>(t)};
  }
  std::vector<int32_t> words_with(int32_t a, int32_t b) {
    auto it = where_.find(key_of(a, b));
    if (it == where_.end()) return {};
    std::vector<int32_t> w(it->second.begin(), it->second.end());
    std::sort(w.begin(), w.end());
    where_.erase(it);
    return w;
  }

 private:
  std::unordered_map<uint64_t, int64_t> count_;
  std::unordered_map<uint64_t, std::unordered_set<int32_t>> where_;
  std::set<std::tuple<int64_t, int32_t, int32_t>> order_;
};

}  // namespace

void BpeWordCounter::add_caption(const std::string& caption) {
  for (const std::string& piece : BpeTokenizer::pretokenize(text::clean_caption(caption))) {
    if (piece == "<start_of_text>" || piece == "<end_of_text>") continue;
    ++counts_[piece];
    ++words_;
  }
}

BpeTrainResult train_bpe(const BpeWordCounter& counter, const BpeTrainOptions& options) {
  COCA_CHECK(options.vocab_size >= BpeTokenizer::kBaseSymbols + 2, "bpe train: vocab_size ",
             options.vocab_size, " is below the minimum ", BpeTokenizer::kBaseSymbols + 2);
  const int want = options.vocab_size - BpeTokenizer::kBaseSymbols - 2;

  // Symbols are interned by their text so that a merge producing an existing string reuses
  // its symbol, which is how the tokenizer (keyed by strings) will see it.
  std::vector<std::string> symbol_text;
  std::unordered_map<std::string, int32_t> symbol_id;
  auto intern = [&](const std::string& s) {
    auto [it, fresh] = symbol_id.emplace(s, static_cast<int32_t>(symbol_text.size()));
    if (fresh) symbol_text.push_back(s);
    return it->second;
  };
  for (int b = 0; b < 256; ++b) intern(BpeTokenizer::byte_symbol(static_cast<uint8_t>(b)));
  for (int b = 0; b < 256; ++b) intern(BpeTokenizer::byte_symbol(static_cast<uint8_t>(b)) + "</w>");

  // Words in a canonical order (sorted by text) so the result ignores caption order.
  std::vector<std::pair<std::string, int64_t>> sorted(counter.counts().begin(), counter.counts().end());
  std::sort(sorted.begin(), sorted.end());
  std::vector<std::vector<int32_t>> words;
  std::vector<int64_t> freq;
  for (const auto& [piece, count] : sorted) {
    std::vector<int32_t> w;
    for (size_t i = 0; i < piece.size(); ++i) {
      const std::string& sym = BpeTokenizer::byte_symbol(static_cast<uint8_t>(piece[i]));
      w.push_back(symbol_id.at(i + 1 == piece.size() ? sym + "</w>" : sym));
    }
    words.push_back(std::move(w));
    freq.push_back(count);
  }
  PairTable pairs;
  for (size_t wi = 0; wi < words.size(); ++wi)
    for (size_t i = 0; i + 1 < words[wi].size(); ++i)
      pairs.add(words[wi][i], words[wi][i + 1], freq[wi], static_cast<int32_t>(wi));

  BpeTrainResult result;
  result.words = counter.words();
  result.unique_words = static_cast<int64_t>(words.size());
  while (static_cast<int>(result.merges.size()) < want) {
    if (pairs.empty()) { result.ran_out_of_pairs = true; break; }
    const auto [count, a, b] = pairs.best();
    if (count < options.min_pair_count) { result.ran_out_of_pairs = true; break; }
    const int32_t merged = intern(symbol_text[a] + symbol_text[b]);
    result.merges.emplace_back(symbol_text[a], symbol_text[b]);
    for (int32_t wi : pairs.words_with(a, b)) {
      std::vector<int32_t>& w = words[wi];
      bool has = false;
      for (size_t i = 0; i + 1 < w.size(); ++i) has |= (w[i] == a && w[i + 1] == b);
      if (!has) continue;
      for (size_t i = 0; i + 1 < w.size(); ++i) pairs.add(w[i], w[i + 1], -freq[wi], wi);
      std::vector<int32_t> next;
      for (size_t i = 0; i < w.size();) {
        if (i + 1 < w.size() && w[i] == a && w[i + 1] == b) { next.push_back(merged); i += 2; }
        else next.push_back(w[i++]);
      }
      w.swap(next);
      for (size_t i = 0; i + 1 < w.size(); ++i) pairs.add(w[i], w[i + 1], freq[wi], wi);
    }
    if (options.progress && result.merges.size() % 256 == 0)
      options.progress(static_cast<int>(result.merges.size()), want);
  }
  result.vocab_size = static_cast<int>(result.merges.size()) + BpeTokenizer::kBaseSymbols + 2;
  return result;
}

}  // namespace coca
