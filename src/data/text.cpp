#include "coca/data/text.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace coca::text {
namespace {

struct CodeRange { uint32_t lo, hi; };
struct LowerEntry { uint32_t cp; const char* lower; };
struct NamedEntity { const char* name; const char* value; };
struct InvalidCharref { uint32_t cp; const char* value; };
#include "unicode_tables.inc"
#include "html_entities.inc"

template <size_t N>
bool in_ranges(const CodeRange (&rs)[N], char32_t cp) {
  const CodeRange* end = rs + N;
  const CodeRange* it = std::upper_bound(rs, end, static_cast<uint32_t>(cp),
                                         [](uint32_t v, const CodeRange& r) { return v < r.lo; });
  if (it == rs) return false;
  --it;
  return cp >= it->lo && cp <= it->hi;
}

const char* find_entity(std::string_view name) {
  const NamedEntity* b = kHtml5Entities;
  const NamedEntity* e = b + sizeof(kHtml5Entities) / sizeof(kHtml5Entities[0]);
  const NamedEntity* it = std::lower_bound(b, e, name, [](const NamedEntity& x, std::string_view n) {
    return std::string_view(x.name) < n;
  });
  if (it != e && std::string_view(it->name) == name) return it->value;
  return nullptr;
}

// Decodes one code point at s[i]; returns its length, 0 when malformed.
size_t decode_one(std::string_view s, size_t i, char32_t& cp) {
  const auto c0 = static_cast<unsigned char>(s[i]);
  if (c0 < 0x80) { cp = c0; return 1; }
  size_t n;
  char32_t v;
  char32_t min;
  if ((c0 & 0xE0) == 0xC0) { n = 2; v = c0 & 0x1F; min = 0x80; }
  else if ((c0 & 0xF0) == 0xE0) { n = 3; v = c0 & 0x0F; min = 0x800; }
  else if ((c0 & 0xF8) == 0xF0) { n = 4; v = c0 & 0x07; min = 0x10000; }
  else return 0;
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    const auto c = static_cast<unsigned char>(s[i + k]);
    if ((c & 0xC0) != 0x80) return 0;
    v = (v << 6) | (c & 0x3F);
  }
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
  cp = v;
  return n;
}

}  // namespace

bool valid_utf8(std::string_view s) {
  char32_t cp;
  for (size_t i = 0; i < s.size();) {
    const size_t n = decode_one(s, i, cp);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::u32string utf8_decode(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  char32_t cp;
  for (size_t i = 0; i < s.size();) {
    const size_t n = decode_one(s, i, cp);
    if (n == 0) { out.push_back(0xFFFD); ++i; }
    else { out.push_back(cp); i += n; }
  }
  return out;
}

void utf8_append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string utf8_encode(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t cp : s) utf8_append(out, cp);
  return out;
}

bool is_letter(char32_t cp) { return in_ranges(kLetterRanges, cp); }
bool is_number(char32_t cp) { return in_ranges(kNumberRanges, cp); }
bool is_space(char32_t cp) { return in_ranges(kSpaceRanges, cp); }

std::string to_lower(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  const LowerEntry* b = kLowerMap;
  const LowerEntry* e = b + sizeof(kLowerMap) / sizeof(kLowerMap[0]);
  for (char32_t cp : utf8_decode(s)) {
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp));
      continue;
    }
    const LowerEntry* it = std::lower_bound(b, e, static_cast<uint32_t>(cp),
                                            [](const LowerEntry& x, uint32_t v) { return x.cp < v; });
    if (it != e && it->cp == cp) out += it->lower;
    else utf8_append(out, cp);
  }
  return out;
}

std::string html_unescape(std::string_view s) {
  if (s.find('&') == std::string_view::npos) return std::string(s);
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
  auto is_hex = [&](char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); };
  while (i < s.size()) {
    if (s[i] != '&') { out.push_back(s[i++]); continue; }
    size_t j = i + 1;
    if (j < s.size() && s[j] == '#') {
      const bool hex = j + 1 < s.size() && (s[j + 1] == 'x' || s[j + 1] == 'X');
      size_t k = j + (hex ? 2 : 1);
      const size_t digits_start = k;
      uint64_t num = 0;
      bool overflow = false;
      while (k < s.size() && (hex ? is_hex(s[k]) : is_digit(s[k]))) {
        const char c = s[k];
        const int d = is_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10;
        num = num * (hex ? 16 : 10) + static_cast<uint64_t>(d);
        if (num > 0x10FFFFull) overflow = true, num = 0x110000;
        ++k;
      }
      if (k == digits_start) { out.push_back('&'); ++i; continue; }
      if (k < s.size() && s[k] == ';') ++k;
      i = k;
      (void)overflow;
      const InvalidCharref* ib = kInvalidCharrefs;
      const InvalidCharref* ie = ib + sizeof(kInvalidCharrefs) / sizeof(kInvalidCharrefs[0]);
      const InvalidCharref* it = std::find_if(ib, ie, [&](const InvalidCharref& r) { return r.cp == num; });
      if (it != ie) { out += it->value; continue; }
      if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) { utf8_append(out, 0xFFFD); continue; }
      const uint32_t* cb = kInvalidCodepoints;
      const uint32_t* ce = cb + sizeof(kInvalidCodepoints) / sizeof(kInvalidCodepoints[0]);
      if (std::binary_search(cb, ce, static_cast<uint32_t>(num))) continue;
      utf8_append(out, static_cast<char32_t>(num));
      continue;
    }
    // Named reference: [^\t\n\f <&#;]{1,32};? as Python's html module matches it.
    size_t k = j;
    while (k < s.size() && k - j < 32 && std::strchr("\t\n\f <&#;", s[k]) == nullptr) ++k;
    if (k == j) { out.push_back('&'); ++i; continue; }
    if (k < s.size() && s[k] == ';') ++k;
    const std::string_view name = s.substr(j, k - j);
    i = k;
    if (const char* v = find_entity(name)) { out += v; continue; }
    bool done = false;
    for (size_t x = name.size() - 1; x > 1; --x) {
      if (const char* v = find_entity(name.substr(0, x))) {
        out += v;
        out += name.substr(x);
        done = true;
        break;
      }
    }
    if (!done) { out.push_back('&'); out += name; }
  }
  return out;
}

std::string trim(std::string_view s) {
  std::u32string u = utf8_decode(s);
  size_t a = 0, b = u.size();
  while (a < b && is_space(u[a])) ++a;
  while (b > a && is_space(u[b - 1])) --b;
  return utf8_encode(std::u32string_view(u).substr(a, b - a));
}

std::string basic_clean(std::string_view s) {
  std::u32string u = utf8_decode(s);
  std::u32string out;
  out.reserve(u.size());
  for (size_t i = 0; i < u.size(); ++i) {
    char32_t c = u[i];
    if (c == 0x1B) {  // terminal escape: ESC [ params letter
      size_t k = i + 1;
      if (k < u.size() && u[k] == '[') {
        ++k;
        while (k < u.size() && ((u[k] >= '0' && u[k] <= '9') || u[k] == ';')) ++k;
        if (k < u.size()) { i = k; continue; }
      }
      continue;
    }
    if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f' && c != '\v') || c == 0x7F ||
        (c >= 0x80 && c < 0xA0 && c != 0x85) || c == 0xFEFF || c == 0xFFFD)
      continue;
    switch (c) {
      case 0x2018: case 0x2019: case 0x201A: case 0x201B: out.push_back('\''); continue;
      case 0x201C: case 0x201D: case 0x201E: case 0x201F: out.push_back('"'); continue;
      case 0xFB00: out += U"ff"; continue;
      case 0xFB01: out += U"fi"; continue;
      case 0xFB02: out += U"fl"; continue;
      case 0xFB03: out += U"ffi"; continue;
      case 0xFB04: out += U"ffl"; continue;
      case 0xFB05: case 0xFB06: out += U"st"; continue;
      case 0x3000: out.push_back(' '); continue;
      default: break;
    }
    if (c >= 0xFF01 && c <= 0xFF5E) c = c - 0xFF01 + 0x21;  // full-width ASCII
    out.push_back(c);
  }
  std::string t = utf8_encode(out);
  t = html_unescape(html_unescape(t));
  return trim(t);
}

std::string whitespace_clean(std::string_view s) {
  std::u32string u = utf8_decode(s);
  std::u32string out;
  out.reserve(u.size());
  bool pending_space = false;
  for (char32_t c : u) {
    if (is_space(c)) { pending_space = true; continue; }
    if (pending_space && !out.empty()) out.push_back(' ');
    pending_space = false;
    out.push_back(c);
  }
  return utf8_encode(out);
}

std::string clean_caption(std::string_view s) { return to_lower(whitespace_clean(basic_clean(s))); }

}  // namespace coca::text
