#pragma once
// Unicode text helpers for captions: strict UTF-8 validation, the character classes of
// OpenCLIP's pre-tokenisation regex (\p{L}, \p{N}, \s), Python's str.lower() and
// html.unescape(), and the caption clean-up the tokenizer applies before encoding.
#include <string>
#include <string_view>
#include <vector>

namespace coca::text {

// True when `s` is well-formed UTF-8 (no overlongs, surrogates or code points > U+10FFFF).
bool valid_utf8(std::string_view s);
// Decodes UTF-8; malformed bytes become U+FFFD (as Python's errors="replace").
std::u32string utf8_decode(std::string_view s);
void utf8_append(std::string& out, char32_t cp);
std::string utf8_encode(std::u32string_view s);

bool is_letter(char32_t cp);  // general category L*
bool is_number(char32_t cp);  // general category N*
bool is_space(char32_t cp);   // Python str.isspace()

std::string to_lower(std::string_view s);       // Python str.lower()
std::string html_unescape(std::string_view s);  // Python html.unescape()

// ftfy-like basic clean-up (a subset of ftfy.fix_text: control characters and terminal
// escapes removed, curly quotes straightened, Latin ligatures and full-width ASCII
// expanded), then html.unescape applied twice, then stripped; as OpenCLIP's basic_clean.
std::string basic_clean(std::string_view s);
// Collapses every run of whitespace to one space and strips the ends.
std::string whitespace_clean(std::string_view s);
// What the tokenizer encodes: whitespace_clean(basic_clean(s)) lower-cased.
std::string clean_caption(std::string_view s);
// Strips leading and trailing whitespace (ASCII and Unicode).
std::string trim(std::string_view s);

}  // namespace coca::text
