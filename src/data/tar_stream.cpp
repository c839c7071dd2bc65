#include "coca/data/tar_stream.h"

#include <algorithm>
#include <cstring>

#include <nlohmann/json.hpp>

#include "coca/tensor/error.h"

namespace coca {

namespace {

// A numeric header field: octal digits (space or NUL padded), or GNU's base-256 for large sizes
// (first byte 0x80, then big-endian bytes). -1 for a negative base-256 number (first byte 0xff)
// or one past 63 bits: the caller refuses the header instead of using a wrapped size.
int64_t parse_tar_number(const char* p, size_t n) {
  if (static_cast<unsigned char>(p[0]) & 0x80) {
    if (static_cast<unsigned char>(p[0]) != 0x80) return -1;
    uint64_t v = 0;
    for (size_t i = 1; i < n; ++i) {
      if (v >> 55) return -1;  // one more byte would pass 63 bits
      v = (v << 8) | static_cast<unsigned char>(p[i]);
    }
    return static_cast<int64_t>(v);
  }
  int64_t v = 0;
  size_t i = 0;
  while (i < n && (p[i] == ' ' || p[i] == '\0')) ++i;
  for (; i < n && p[i] >= '0' && p[i] <= '7'; ++i) v = v * 8 + (p[i] - '0');
  return v;
}

std::string lower_ascii(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool is_image_extension(const std::string& ext) {
  return ext == "jpg" || ext == "jpeg" || ext == "png" || ext == "webp";
}

// WebDataset's key: the path up to the first dot of the file name; ext: the rest, lower case.
void split_member_name(const std::string& name, std::string& key, std::string& ext) {
  const size_t slash = name.rfind('/');
  const size_t dot = name.find('.', slash == std::string::npos ? 0 : slash + 1);
  key = dot == std::string::npos ? name : name.substr(0, dot);
  ext = dot == std::string::npos ? "" : lower_ascii(name.substr(dot + 1));
}

constexpr int64_t kMaxJsonBytes = int64_t{1} << 20;  // img2dataset's metadata is a few hundred bytes

// The members a sample is made of; the rest is skipped unread.
bool wanted_member(const std::string& name, int64_t size) {
  std::string key, ext;
  split_member_name(name, key, ext);
  return is_image_extension(ext) || ext == "txt" || (ext == "json" && size <= kMaxJsonBytes);
}

}  // namespace

bool TarReader::next_header(std::string& name, int64_t& size, char& type) {
  if (done_) return false;
  char h[512];
  for (;;) {
    const int64_t pos = src_.position();
    const size_t got = src_.read(h, 512);
    if (got < 512) {
      // No end-of-archive blocks: fine when the last member ended exactly at the end (some
      // writers omit them), cut off otherwise.
      if (got > 0 || members_ == 0)
        issues_.push_back({"truncated_tar", src_.name(), str_cat("archive ends inside the entry at byte ", pos)});
      done_ = true;
      return false;
    }
    if (std::all_of(h, h + 512, [](char c) { return c == 0; })) {  // end-of-archive block
      done_ = true;
      return false;
    }
    unsigned sum = 0;
    for (int i = 0; i < 512; ++i) sum += (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(h[i]);
    if (static_cast<int64_t>(sum) != parse_tar_number(h + 148, 8)) {
      issues_.push_back({"corrupt_tar", src_.name(), str_cat("bad header checksum at byte ", pos)});
      done_ = true;
      return false;
    }
    size = parse_tar_number(h + 124, 12);
    type = h[156];
    if (size < 0) {
      issues_.push_back({"corrupt_tar", src_.name(), str_cat("bad size field in the header at byte ", pos)});
      done_ = true;
      return false;
    }
    std::string own(h, strnlen(h, 100));
    if (std::memcmp(h + 257, "ustar", 5) == 0 && h[345] != 0) own = std::string(h + 345, strnlen(h + 345, 155)) + "/" + own;
    ++members_;
    if (type == 'L' || type == 'x') {  // the name of the next member
      std::vector<uint8_t> body;
      if (!read_body(body, size)) return false;
      const std::string text(body.begin(), body.end());
      if (type == 'L') {
        long_name_ = text.c_str();
      } else {  // pax: "<len> path=<value>\n" records
        size_t k = 0;
        while (k < text.size()) {
          const size_t sp = text.find(' ', k);
          if (sp == std::string::npos) break;
          const size_t len = std::strtoul(text.c_str() + k, nullptr, 10);
          // The record "<len> <key>=<value>\n" must lie within the body, its space inside it.
          if (len == 0 || len > text.size() - k || sp + 2 > k + len) break;
          const std::string rec = text.substr(sp + 1, k + len - sp - 2);
          if (rec.rfind("path=", 0) == 0) long_name_ = rec.substr(5);
          k += len;
        }
      }
      continue;
    }
    name = long_name_.empty() ? own : long_name_;
    long_name_.clear();
    return true;
  }
}

bool TarReader::read_body(std::vector<uint8_t>& out, int64_t size) {
  // Grown as bytes arrive, so a size field larger than the archive costs no memory.
  out.clear();
  const int64_t start = src_.position() - 512;
  constexpr int64_t kStep = int64_t{1} << 20;
  while (static_cast<int64_t>(out.size()) < size) {
    const size_t have = out.size();
    const size_t want = static_cast<size_t>(std::min<int64_t>(kStep, size - static_cast<int64_t>(have)));
    out.resize(have + want);
    if (src_.read(out.data() + have, want) < want) {
      issues_.push_back({"truncated_tar", src_.name(), str_cat("member at byte ", start, " runs past the end of the file")});
      out.clear();
      done_ = true;
      return false;
    }
  }
  return pad(size);
}

bool TarReader::skip_body(int64_t size) {
  const int64_t start = src_.position() - 512;
  if (src_.skip(size) < size) {
    issues_.push_back({"truncated_tar", src_.name(), str_cat("member at byte ", start, " runs past the end of the file")});
    done_ = true;
    return false;
  }
  return pad(size);
}

bool TarReader::pad(int64_t size) {
  const int64_t padding = (512 - size % 512) % 512;
  if (src_.skip(padding) < padding) done_ = true;  // the data is whole; nothing follows
  return true;
}

struct WdsSampleReader::Group {
  std::string key;
  std::vector<uint8_t> image;
  int64_t image_offset = 0;  // in the archive
  bool has_image = false;
  std::string text;
  bool has_text = false;
  std::string json;
  bool has_json = false;
  std::string other_image_ext;
};

WdsSampleReader::WdsSampleReader(ByteSource& source, std::vector<InputIssue>& issues)
    : issues_(issues), tar_(source, issues), base_name_(input_base_name(source.name())) {}

bool WdsSampleReader::finish_group(Group& g, WorkItem& item) {
  std::string full_key = base_name_ + "/" + g.key;
  // img2dataset's <key>.json: its "key" names the sample, its "caption" stands in for a
  // missing .txt. A .json that is not a JSON object is ignored (the .txt still counts).
  nlohmann::json metadata;
  if (g.has_json) {
    try {
      metadata = nlohmann::json::parse(g.json);
    } catch (const nlohmann::json::exception&) {
      metadata = nlohmann::json();
    }
    if (!metadata.is_object()) metadata = nlohmann::json();
  }
  if (metadata.contains("key") && metadata["key"].is_string() && !metadata["key"].get<std::string>().empty())
    full_key = metadata["key"].get<std::string>();
  const bool json_caption = metadata.contains("caption") && metadata["caption"].is_string();
  if (!g.has_image) {
    issues_.push_back({g.other_image_ext.empty() ? "missing_image" : "unsupported_image_format", full_key,
                       g.other_image_ext.empty() ? "no .jpg/.jpeg/.png/.webp member" : "." + g.other_image_ext});
    return false;
  }
  if (!g.has_text && !json_caption) {
    issues_.push_back({"missing_caption", full_key, "no .txt member and no \"caption\" in a .json member"});
    return false;
  }
  item = WorkItem();
  item.key = full_key;
  item.image.in_memory = true;
  item.image.path = base_name_ + "/" + g.key;
  item.image.offset = g.image_offset;
  item.image.size = static_cast<int64_t>(g.image.size());
  item.image.data = std::move(g.image);
  item.captions.push_back(g.has_text ? g.text : metadata["caption"].get<std::string>());
  return true;
}

bool WdsSampleReader::next(WorkItem& item) {
  while (!ended_) {
    Group g;
    if (!have_member_) {
      if (!tar_.next(member_, wanted_member)) {
        ended_ = true;
        return false;
      }
      have_member_ = true;
    }
    std::string ext;
    split_member_name(member_.name, g.key, ext);
    // Consecutive members with this key; the first member of the next key stays in member_.
    for (;;) {
      std::string key;
      split_member_name(member_.name, key, ext);
      if (key != g.key) break;
      if (is_image_extension(ext)) {
        if (!g.has_image) g.image = std::move(member_.data), g.image_offset = member_.offset, g.has_image = true;
      } else if (ext == "txt") {
        g.text.assign(member_.data.begin(), member_.data.end()), g.has_text = true;
      } else if (ext == "json") {
        g.json.assign(member_.data.begin(), member_.data.end()), g.has_json = true;
      } else if (ext == "gif" || ext == "bmp" || ext == "tif" || ext == "tiff") {
        g.other_image_ext = ext;
      }
      member_.data.clear();
      if (!tar_.next(member_, wanted_member)) {
        have_member_ = false;
        ended_ = true;
        break;
      }
    }
    if (finish_group(g, item)) return true;
  }
  return false;
}

}  // namespace coca
