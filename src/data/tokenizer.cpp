#include "coca/data/tokenizer.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>

#include "coca/data/text.h"

namespace coca {
namespace {

struct ByteTables {
  std::array<std::string, 256> symbol;  // byte -> UTF-8 of its stand-in code point
  std::array<int, 256> id;              // byte -> vocabulary id
  std::unordered_map<char32_t, uint8_t> decode;
  ByteTables() {
    std::vector<int> bs;
    for (int b = '!'; b <= '~'; ++b) bs.push_back(b);
    for (int b = 0xA1; b <= 0xAC; ++b) bs.push_back(b);
    for (int b = 0xAE; b <= 0xFF; ++b) bs.push_back(b);
    std::vector<int> cs = bs;
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      if (std::find(bs.begin(), bs.end(), b) == bs.end()) {
        bs.push_back(b);
        cs.push_back(256 + n++);
      }
    }
    for (int i = 0; i < 256; ++i) {
      symbol[bs[i]].clear();
      text::utf8_append(symbol[bs[i]], static_cast<char32_t>(cs[i]));
      id[bs[i]] = i;
      decode[static_cast<char32_t>(cs[i])] = static_cast<uint8_t>(bs[i]);
    }
  }
};

const ByteTables& byte_tables() {
  static const ByteTables t;
  return t;
}

const std::string kSot = "<start_of_text>";
const std::string kEot = "<end_of_text>";
const std::string kEndOfWord = "</w>";

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

std::string read_maybe_gzip(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");  // reads plain files transparently
  COCA_CHECK(f != nullptr, "tokenizer: cannot open merges file ", path);
  std::string out;
  std::vector<char> buf(1 << 16);
  for (;;) {
    const int n = gzread(f, buf.data(), static_cast<unsigned>(buf.size()));
    if (n < 0) {
      int errnum = 0;
      std::string msg = gzerror(f, &errnum);
      gzclose(f);
      throw Error(str_cat("tokenizer: reading ", path, ": ", msg));
    }
    if (n == 0) break;
    out.append(buf.data(), static_cast<size_t>(n));
  }
  gzclose(f);
  return out;
}

}  // namespace

const std::string& BpeTokenizer::byte_symbol(uint8_t b) { return byte_tables().symbol[b]; }
int BpeTokenizer::byte_id(uint8_t b) { return byte_tables().id[b]; }

BpeTokenizer& BpeTokenizer::operator=(const BpeTokenizer& o) {
  if (this == &o) return *this;
  vocab_ = o.vocab_;
  merges_ = o.merges_;
  encoder_ = o.encoder_;
  ranks_ = o.ranks_;
  std::lock_guard<std::mutex> lock(cache_mu_);
  cache_.clear();
  return *this;
}

void BpeTokenizer::build(const std::vector<BpeMerge>& merges) {
  const ByteTables& bt = byte_tables();
  vocab_.clear();
  vocab_.resize(kBaseSymbols);
  for (int b = 0; b < 256; ++b) {
    vocab_[bt.id[b]] = bt.symbol[b];
    vocab_[256 + bt.id[b]] = bt.symbol[b] + kEndOfWord;
  }
  for (const auto& m : merges) vocab_.push_back(m.first + m.second);
  vocab_.push_back(kSot);
  vocab_.push_back(kEot);
  merges_ = merges;
  encoder_.clear();
  // Later duplicates win, as in OpenCLIP's dict(zip(vocab, range(len(vocab)))).
  for (size_t i = 0; i < vocab_.size(); ++i) encoder_[vocab_[i]] = static_cast<int32_t>(i);
  ranks_.clear();
  for (size_t r = 0; r < merges.size(); ++r) {
    auto a = encoder_.find(merges[r].first);
    auto b = encoder_.find(merges[r].second);
    COCA_CHECK(a != encoder_.end() && b != encoder_.end(), "tokenizer: merge ", r + 1, " (\"",
               merges[r].first, " ", merges[r].second, "\") uses a symbol that no earlier merge made");
    const uint64_t key = pair_key(a->second, b->second);
    // A repeated pair takes its last rank, as OpenCLIP's dict(zip(merges, range(...))) does.
    ranks_[key] = {static_cast<int32_t>(r), encoder_.at(merges[r].first + merges[r].second)};
  }
  std::lock_guard<std::mutex> lock(cache_mu_);
  cache_.clear();
}

BpeTokenizer BpeTokenizer::from_merges(const std::vector<BpeMerge>& merges) {
  BpeTokenizer t;
  t.build(merges);
  return t;
}

BpeTokenizer BpeTokenizer::load(const std::string& path, int vocab_size) {
  const std::string data = read_maybe_gzip(path);
  std::vector<std::string_view> lines;
  size_t pos = 0;
  while (pos <= data.size()) {
    size_t nl = data.find('\n', pos);
    if (nl == std::string::npos) nl = data.size();
    lines.emplace_back(data.data() + pos, nl - pos);
    pos = nl + 1;
  }
  COCA_CHECK(!lines.empty() && !data.empty(), "tokenizer: ", path, " is empty");
  if (vocab_size == 0) {
    const std::string_view header = lines[0];
    const size_t at = header.find("vocab_size=");
    vocab_size = kOpenClipVocabSize;
    if (at != std::string_view::npos) vocab_size = std::atoi(std::string(header.substr(at + 11)).c_str());
  }
  COCA_CHECK(vocab_size >= kBaseSymbols + 2, "tokenizer: ", path, ": vocab_size ", vocab_size,
             " is below the minimum ", kBaseSymbols + 2);
  const size_t want = static_cast<size_t>(vocab_size - kBaseSymbols - 2);
  COCA_CHECK(lines.size() >= want + 1, "tokenizer: ", path, " has ", lines.size() - 1,
             " merge lines but vocab_size ", vocab_size, " needs ", want);
  std::vector<BpeMerge> merges;
  merges.reserve(want);
  for (size_t i = 1; i <= want; ++i) {
    const std::string_view line = lines[i];
    // Python's str.split(): runs of ASCII whitespace separate the two symbols.
    std::vector<std::string> parts;
    size_t k = 0;
    while (k < line.size()) {
      while (k < line.size() && std::isspace(static_cast<unsigned char>(line[k]))) ++k;
      size_t e = k;
      while (e < line.size() && !std::isspace(static_cast<unsigned char>(line[e]))) ++e;
      if (e > k) parts.emplace_back(line.substr(k, e - k));
      k = e;
    }
    COCA_CHECK(parts.size() == 2, "tokenizer: ", path, " line ", i + 1, ": expected two symbols, got \"",
               std::string(line), "\"");
    merges.emplace_back(parts[0], parts[1]);
  }
  return from_merges(merges);
}

const std::string& BpeTokenizer::token_text(int32_t id) const {
  COCA_CHECK(id >= 0 && id < vocab_size(), "tokenizer: id ", id, " outside the vocabulary [0, ",
             vocab_size(), ")");
  return vocab_[static_cast<size_t>(id)];
}

std::vector<std::string> BpeTokenizer::pretokenize(std::string_view cleaned) {
  // <start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
  const std::u32string u = text::utf8_decode(cleaned);
  const std::u32string sot32(kSot.begin(), kSot.end()), eot32(kEot.begin(), kEot.end());
  std::vector<std::string> out;
  size_t i = 0;
  auto starts_with = [&](const std::u32string& p) { return u.compare(i, p.size(), p) == 0; };
  while (i < u.size()) {
    const char32_t c = u[i];
    size_t end = i;
    if (starts_with(sot32)) {
      end = i + sot32.size();
    } else if (starts_with(eot32)) {
      end = i + eot32.size();
    } else if (c == '\'' && i + 1 < u.size() &&
               (u[i + 1] == 's' || u[i + 1] == 't' || u[i + 1] == 'm' || u[i + 1] == 'd')) {
      end = i + 2;
    } else if (c == '\'' && i + 2 < u.size() &&
               ((u[i + 1] == 'r' && u[i + 2] == 'e') || (u[i + 1] == 'v' && u[i + 2] == 'e') ||
                (u[i + 1] == 'l' && u[i + 2] == 'l'))) {
      end = i + 3;
    } else if (text::is_letter(c)) {
      while (end < u.size() && text::is_letter(u[end])) ++end;
    } else if (text::is_number(c)) {
      end = i + 1;
    } else if (text::is_space(c)) {
      ++i;
      continue;
    } else {
      while (end < u.size() && !text::is_space(u[end]) && !text::is_letter(u[end]) && !text::is_number(u[end]))
        ++end;
    }
    out.push_back(text::utf8_encode(std::u32string_view(u).substr(i, end - i)));
    i = end;
  }
  return out;
}

std::vector<int32_t> BpeTokenizer::bpe(std::string_view piece) const {
  {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(std::string(piece));
    if (it != cache_.end()) return it->second;
  }
  std::vector<int32_t> word;
  word.reserve(piece.size());
  for (size_t i = 0; i < piece.size(); ++i) {
    const int id = byte_id(static_cast<uint8_t>(piece[i]));
    word.push_back(i + 1 == piece.size() ? id + 256 : id);
  }
  while (word.size() > 1) {
    int32_t best_rank = std::numeric_limits<int32_t>::max();
    int32_t first = -1, second = -1, merged = -1;
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      auto it = ranks_.find(pair_key(word[i], word[i + 1]));
      if (it != ranks_.end() && it->second.first < best_rank) {
        best_rank = it->second.first;
        first = word[i];
        second = word[i + 1];
        merged = it->second.second;
      }
    }
    if (first < 0) break;
    std::vector<int32_t> next;
    next.reserve(word.size());
    for (size_t i = 0; i < word.size();) {
      if (i + 1 < word.size() && word[i] == first && word[i + 1] == second) {
        next.push_back(merged);
        i += 2;
      } else {
        next.push_back(word[i++]);
      }
    }
    word.swap(next);
  }
  std::lock_guard<std::mutex> lock(cache_mu_);
  if (cache_.size() < 200000) cache_.emplace(std::string(piece), word);
  return word;
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view raw) const {
  COCA_CHECK(!vocab_.empty(), "tokenizer: encode called before a vocabulary was loaded");
  std::vector<int32_t> ids;
  for (const std::string& piece : pretokenize(text::clean_caption(raw))) {
    if (piece == kSot) { ids.push_back(sot()); continue; }
    if (piece == kEot) { ids.push_back(eot()); continue; }
    const std::vector<int32_t> w = bpe(piece);
    ids.insert(ids.end(), w.begin(), w.end());
  }
  return ids;
}

std::vector<int32_t> BpeTokenizer::encode_row(std::string_view text, int context_length) const {
  COCA_CHECK(context_length >= 2, "tokenizer: context_length ", context_length, " cannot hold start and end tokens");
  std::vector<int32_t> row;
  row.reserve(static_cast<size_t>(context_length));
  row.push_back(sot());
  for (int32_t id : encode(text)) row.push_back(id);
  row.push_back(eot());
  if (row.size() > static_cast<size_t>(context_length)) {
    row.resize(static_cast<size_t>(context_length));
    row.back() = eot();
  }
  row.resize(static_cast<size_t>(context_length), pad());
  return row;
}

Tensor BpeTokenizer::encode_batch(const std::vector<std::string>& texts, int context_length) const {
  Tensor out = Tensor::empty({static_cast<int64_t>(texts.size()), context_length}, DType::i32);
  int32_t* p = out.data<int32_t>();
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::vector<int32_t> row = encode_row(texts[i], context_length);
    std::copy(row.begin(), row.end(), p + i * static_cast<size_t>(context_length));
  }
  return out;
}

std::string BpeTokenizer::decode(const std::vector<int32_t>& ids) const {
  const ByteTables& bt = byte_tables();
  std::string bytes;
  for (int32_t id : ids) {
    for (char32_t cp : text::utf8_decode(token_text(id))) {
      auto it = bt.decode.find(cp);
      COCA_CHECK(it != bt.decode.end(), "tokenizer: token ", id, " holds a character outside the byte alphabet");
      bytes.push_back(static_cast<char>(it->second));
    }
  }
  const std::string text = text::utf8_encode(text::utf8_decode(bytes));  // errors="replace"
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    if (text.compare(i, kEndOfWord.size(), kEndOfWord) == 0) {
      out.push_back(' ');
      i += kEndOfWord.size();
    } else {
      out.push_back(text[i++]);
    }
  }
  return out;
}

std::string BpeTokenizer::decode_row(const std::vector<int32_t>& row) const {
  std::vector<int32_t> ids;
  for (size_t i = 0; i < row.size(); ++i) {
    if (i == 0 && row[i] == sot()) continue;
    if (row[i] == eot()) break;
    ids.push_back(row[i]);
  }
  return text::trim(decode(ids));
}

void write_merges_file(const std::string& path, const std::vector<BpeMerge>& merges) {
  const int vocab_size = static_cast<int>(merges.size()) + BpeTokenizer::kBaseSymbols + 2;
  std::string body = str_cat("#version: 0.2 coca-bpe vocab_size=", vocab_size, "\n");
  for (const auto& m : merges) body += m.first + " " + m.second + "\n";
  const std::string tmp = path + ".tmp";
  const bool gz = path.size() > 3 && path.compare(path.size() - 3, 3, ".gz") == 0;
  if (gz) {
    gzFile f = gzopen(tmp.c_str(), "wb9");
    COCA_CHECK(f != nullptr, "tokenizer: cannot create ", tmp);
    const int n = gzwrite(f, body.data(), static_cast<unsigned>(body.size()));
    const int rc = gzclose(f);
    COCA_CHECK(n == static_cast<int>(body.size()) && rc == Z_OK, "tokenizer: writing ", tmp, " failed");
  } else {
    std::ofstream f(tmp, std::ios::binary);
    f.write(body.data(), static_cast<std::streamsize>(body.size()));
    f.close();
    COCA_CHECK(f.good(), "tokenizer: writing ", tmp, " failed");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  COCA_CHECK(!ec, "tokenizer: renaming ", tmp, " to ", path, ": ", ec.message());
}

}  // namespace coca
