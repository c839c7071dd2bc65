#include "coca/data/shard_inputs.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "coca/tensor/error.h"

namespace fs = std::filesystem;

namespace coca {
namespace {

std::string read_text_file(const std::string& path, const char* what) {
  std::ifstream f(path, std::ios::binary);
  COCA_CHECK(f.good(), "cannot open ", what, " ", path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string lower_ascii(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool is_image_extension(const std::string& ext) {
  return ext == "jpg" || ext == "jpeg" || ext == "png" || ext == "webp";
}

}  // namespace

std::vector<DelimitedRow> parse_delimited(const std::string& text, char sep) {
  std::vector<DelimitedRow> rows;
  DelimitedRow row;
  std::string field;
  bool in_quotes = false, field_started = false;
  size_t i = 0, quote_pos = 0;  // quote_pos: where the current quoted field opened
  int64_t line = 1, quote_line = 0;
  if (text.size() >= 3 && text.compare(0, 3, "\xEF\xBB\xBF") == 0) i = 3;  // BOM
  row.line = 1;
  auto end_field = [&] {
    row.fields.push_back(std::move(field));
    field.clear();
    field_started = false;
  };
  auto start_row = [&] {
    row = DelimitedRow();
    row.line = line;
    field.clear();
    field_started = in_quotes = false;
  };
  auto end_row = [&] {
    end_field();
    row.last_line = line;
    if (!(row.fields.size() == 1 && row.fields[0].empty())) rows.push_back(std::move(row));
  };
  while (true) {
    for (; i < text.size(); ++i) {
      const char c = text[i];
      if (in_quotes) {
        if (c == '"') {
          if (i + 1 < text.size() && text[i + 1] == '"') { field.push_back('"'); ++i; }
          else in_quotes = false;
        } else {
          field.push_back(c);
          if (c == '\n') ++line;
        }
      } else if (c == '"' && !field_started) {
        in_quotes = field_started = true;
        quote_pos = i;
        quote_line = line;
      } else if (c == sep) {
        end_field();
      } else if (c == '\n') {
        end_row();
        ++line;
        start_row();
      } else if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') {
        // the '\n' ends the row
      } else {
        field.push_back(c);
        field_started = true;
      }
    }
    if (!in_quotes) break;
    // The file ended inside quotes: the field swallowed every line after the one it opened
    // on. No later quote can close it, so those lines are rows of their own: report this row
    // and parse again from the line after the quote.
    DelimitedRow bad;
    bad.line = row.line;
    bad.last_line = quote_line;
    bad.unclosed_quote_line = quote_line;
    rows.push_back(std::move(bad));
    const size_t nl = text.find('\n', quote_pos);
    i = nl == std::string::npos ? text.size() : nl + 1;
    line = quote_line + 1;
    start_row();
  }
  if (!field.empty() || !row.fields.empty()) end_row();
  return rows;
}

InputListing list_csv(const std::string& path, const CsvOptions& options) {
  const auto rows = parse_delimited(read_text_file(path, "caption table"), options.separator);
  COCA_CHECK(!rows.empty(), path, ": empty caption table (expected a header row)");
  COCA_CHECK(rows[0].unclosed_quote_line == 0, path, ":", rows[0].unclosed_quote_line,
             ": the header row opens a quoted field that is never closed");
  const auto& header = rows[0].fields;
  auto column = [&](const std::string& name) {
    auto it = std::find(header.begin(), header.end(), name);
    COCA_CHECK(it != header.end(), path, ": no column '", name, "' in the header (columns: ",
               [&] { std::string s; for (const auto& h : header) s += (s.empty() ? "" : ", ") + h; return s; }(),
               "); set the column names with --csv-image-key/--csv-caption-key");
    return static_cast<size_t>(it - header.begin());
  };
  const size_t img_col = column(options.image_column), cap_col = column(options.caption_column);
  const std::string file_name = fs::path(path).filename().string();
  // Relative image paths: under --images-root when given, else next to the table.
  const fs::path base = options.images_root.empty() ? fs::path(path).parent_path() : fs::path(options.images_root);
  InputListing out;
  for (size_t r = 1; r < rows.size(); ++r) {
    const DelimitedRow& row = rows[r];
    const std::string key = str_cat(file_name, ":", row.line);
    if (row.unclosed_quote_line > 0) {
      out.issues.push_back({"unclosed_quote", key,
                            str_cat("the quoted field opened on line ", row.unclosed_quote_line,
                                    " is never closed; the rows after it were read from line ",
                                    row.unclosed_quote_line + 1)});
      continue;
    }
    if (row.fields.size() != header.size()) {
      out.issues.push_back({"malformed_row", key,
                            str_cat(row.fields.size(), " fields, header has ", header.size(),
                                    row.last_line > row.line ? str_cat(" (the row spans lines ", row.line, "-",
                                                                       row.last_line, ")")
                                                             : std::string())});
      continue;
    }
    WorkItem item;
    const std::string& p = row.fields[img_col];
    item.image.path = fs::path(p).is_absolute() ? p : (base / p).string();
    item.key = p;
    item.captions.push_back(row.fields[cap_col]);
    out.items.push_back(std::move(item));
  }
  return out;
}

InputListing list_coco(const std::string& json_path, const std::string& images_root) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_text_file(json_path, "COCO captions file"));
  } catch (const nlohmann::json::exception& e) {
    throw Error(str_cat(json_path, ": not valid JSON: ", e.what()));
  }
  COCA_CHECK(j.contains("images") && j.contains("annotations"), json_path,
             ": not a COCO captions file (needs \"images\" and \"annotations\")");
  InputListing out;
  std::map<int64_t, size_t> by_id;
  try {
    for (const auto& im : j.at("images")) {
      WorkItem item;
      const int64_t id = im.at("id").get<int64_t>();
      const std::string file = im.at("file_name").get<std::string>();
      item.image.path = (fs::path(images_root) / file).string();
      item.key = str_cat("coco:", id);
      by_id[id] = out.items.size();
      out.items.push_back(std::move(item));
    }
    for (const auto& ann : j.at("annotations")) {
      const int64_t image_id = ann.at("image_id").get<int64_t>();
      const std::string ann_key = str_cat("coco:", image_id, ":", ann.value("id", int64_t{-1}));
      auto it = by_id.find(image_id);
      if (it == by_id.end()) {
        out.issues.push_back({"unknown_image_id", ann_key, "annotation refers to an image not in \"images\""});
        continue;
      }
      const auto& cap = ann.at("caption");
      WorkItem& item = out.items[it->second];
      item.captions.push_back(cap.is_string() ? cap.get<std::string>() : std::string());
      item.caption_keys.push_back(ann_key);
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(str_cat(json_path, ": malformed COCO record: ", e.what()));
  }
  std::vector<WorkItem> kept;
  for (auto& item : out.items) {
    if (item.captions.empty()) out.issues.push_back({"no_caption", item.key, "image has no caption annotation"});
    else kept.push_back(std::move(item));
  }
  out.items = std::move(kept);
  return out;
}

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

struct TarMember {
  std::string name;
  int64_t offset, size;
};

// Lists regular files; appends an issue and stops at a cut-off or corrupt header.
std::vector<TarMember> list_tar(const std::string& path, std::vector<InputIssue>& issues) {
  std::ifstream f(path, std::ios::binary);
  COCA_CHECK(f.good(), "cannot open tar ", path);
  f.seekg(0, std::ios::end);
  const int64_t file_size = f.tellg();
  f.seekg(0);
  std::vector<TarMember> out;
  std::string long_name;
  int64_t pos = 0;
  char h[512];
  while (true) {
    if (pos + 512 > file_size) {
      // No end-of-archive blocks: fine when the last member ended exactly at the end of the
      // file (some writers omit them), cut off otherwise.
      if (pos != file_size || out.empty())
        issues.push_back({"truncated_tar", path, str_cat("archive ends inside the entry at byte ", pos)});
      break;
    }
    f.seekg(pos);
    f.read(h, 512);
    if (!f) { issues.push_back({"truncated_tar", path, str_cat("read failed at byte ", pos)}); break; }
    if (std::all_of(h, h + 512, [](char c) { return c == 0; })) break;  // end-of-archive block
    unsigned sum = 0;
    for (int i = 0; i < 512; ++i) sum += (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(h[i]);
    if (static_cast<int64_t>(sum) != parse_tar_number(h + 148, 8)) {
      issues.push_back({"corrupt_tar", path, str_cat("bad header checksum at byte ", pos)});
      break;
    }
    const int64_t size = parse_tar_number(h + 124, 12);
    const char type = h[156];
    const int64_t data = pos + 512;
    if (size < 0) {
      issues.push_back({"corrupt_tar", path, str_cat("bad size field in the header at byte ", pos)});
      break;
    }
    if (size > file_size - data) {
      issues.push_back({"truncated_tar", path, str_cat("member at byte ", pos, " runs past the end of the file")});
      break;
    }
    std::string name(h, strnlen(h, 100));
    if (std::memcmp(h + 257, "ustar", 5) == 0 && h[345] != 0)
      name = std::string(h + 345, strnlen(h + 345, 155)) + "/" + name;
    if (type == 'L' || type == 'x') {
      std::string body(static_cast<size_t>(size), '\0');
      f.seekg(data);
      f.read(body.data(), size);
      if (type == 'L') {
        long_name = body.c_str();
      } else {  // pax: "<len> path=<value>\n" records
        size_t k = 0;
        while (k < body.size()) {
          const size_t sp = body.find(' ', k);
          if (sp == std::string::npos) break;
          const size_t len = std::strtoul(body.c_str() + k, nullptr, 10);
          // The record "<len> <key>=<value>\n" must lie within the body, its space inside it.
          if (len == 0 || len > body.size() - k || sp + 2 > k + len) break;
          const std::string rec = body.substr(sp + 1, k + len - sp - 2);
          if (rec.rfind("path=", 0) == 0) long_name = rec.substr(5);
          k += len;
        }
      }
    } else if (type == '0' || type == '\0' || type == '7') {
      out.push_back({long_name.empty() ? name : long_name, data, size});
      long_name.clear();
    } else {
      long_name.clear();
    }
    pos = data + (size + 511) / 512 * 512;
  }
  return out;
}

}  // namespace

InputListing list_webdataset(const std::vector<std::string>& tar_paths) {
  InputListing out;
  for (const std::string& tar : tar_paths) {
    const auto members = list_tar(tar, out.issues);
    const std::string tar_name = fs::path(tar).filename().string();
    auto read_member = [&](const TarMember& m, const std::string& what) {
      std::string bytes(static_cast<size_t>(m.size), '\0');
      std::ifstream f(tar, std::ios::binary);
      f.seekg(m.offset);
      f.read(bytes.data(), m.size);
      COCA_CHECK(f.good() || m.size == 0, "reading ", what, " from ", tar, " failed");
      return bytes;
    };
    // WebDataset groups consecutive members by key = path up to the first dot of the basename.
    size_t i = 0;
    while (i < members.size()) {
      auto split = [](const std::string& name, std::string& key, std::string& ext) {
        const size_t slash = name.rfind('/');
        const size_t dot = name.find('.', slash == std::string::npos ? 0 : slash + 1);
        key = dot == std::string::npos ? name : name.substr(0, dot);
        ext = dot == std::string::npos ? "" : lower_ascii(name.substr(dot + 1));
      };
      std::string key, ext;
      split(members[i].name, key, ext);
      const TarMember* image = nullptr;
      const TarMember* text = nullptr;
      const TarMember* meta = nullptr;
      std::string other_image_ext;
      size_t j = i;
      for (; j < members.size(); ++j) {
        std::string k2, e2;
        split(members[j].name, k2, e2);
        if (k2 != key) break;
        if (is_image_extension(e2)) {
          if (!image) image = &members[j];
        } else if (e2 == "txt") {
          text = &members[j];
        } else if (e2 == "json") {
          meta = &members[j];
        } else if (e2 == "gif" || e2 == "bmp" || e2 == "tif" || e2 == "tiff") {
          other_image_ext = e2;
        }
      }
      std::string full_key = tar_name + "/" + key;
      // img2dataset's <key>.json: its "key" names the sample, its "caption" stands in for a
      // missing .txt. A .json that is not a JSON object is ignored (the .txt still counts).
      nlohmann::json metadata;
      if (meta && meta->size <= (int64_t{1} << 20)) {
        try {
          metadata = nlohmann::json::parse(read_member(*meta, full_key + ".json"));
        } catch (const nlohmann::json::exception&) {
          metadata = nlohmann::json();
        }
        if (!metadata.is_object()) metadata = nlohmann::json();
      }
      if (metadata.contains("key") && metadata["key"].is_string() && !metadata["key"].get<std::string>().empty())
        full_key = metadata["key"].get<std::string>();
      const bool json_caption = metadata.contains("caption") && metadata["caption"].is_string();
      if (!image) {
        out.issues.push_back({other_image_ext.empty() ? "missing_image" : "unsupported_image_format", full_key,
                              other_image_ext.empty() ? "no .jpg/.jpeg/.png/.webp member" : "." + other_image_ext});
      } else if (!text && !json_caption) {
        out.issues.push_back({"missing_caption", full_key, "no .txt member and no \"caption\" in a .json member"});
      } else {
        WorkItem item;
        item.key = full_key;
        item.image = {tar, image->offset, image->size};
        item.captions.push_back(text ? read_member(*text, full_key + ".txt") : metadata["caption"].get<std::string>());
        out.items.push_back(std::move(item));
      }
      i = j;
    }
  }
  return out;
}

namespace {

// Non-empty lines, a trailing '\r' dropped.
std::vector<std::string> read_lines(const std::string& path, const char* what) {
  std::istringstream lines(read_text_file(path, what));
  std::vector<std::string> out;
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

// Names for `ids` (folder names or class ids, in label order) from a class names file: one name
// per line in the same order, or "id<TAB>name" lines.
std::vector<std::string> names_for(const std::vector<std::string>& ids, const std::string& file, const char* ids_what,
                                   const std::string& ids_source) {
  std::vector<std::string> plain;
  std::map<std::string, std::string> mapped;
  for (const std::string& line : read_lines(file, "class names file")) {
    const size_t tab = line.find('\t');
    if (tab != std::string::npos) mapped[line.substr(0, tab)] = line.substr(tab + 1);
    else plain.push_back(line);
  }
  if (!mapped.empty()) {
    std::vector<std::string> out;
    for (const auto& id : ids) {
      auto it = mapped.find(id);
      COCA_CHECK(it != mapped.end(), file, ": no name for class '", id, "'");
      out.push_back(it->second);
    }
    return out;
  }
  COCA_CHECK(plain.size() == ids.size(), file, " lists ", plain.size(), " class names but ", ids_source, " has ",
             ids.size(), " ", ids_what);
  return plain;
}

}  // namespace

InputListing list_image_folder(const std::string& root, const std::string& classnames_file,
                               const std::string& class_ids_file) {
  COCA_CHECK(fs::is_directory(root), "image folder ", root, " is not a directory");
  std::vector<std::string> folders;
  for (const auto& e : fs::directory_iterator(root))
    if (e.is_directory() && e.path().filename().string()[0] != '.') folders.push_back(e.path().filename().string());
  std::sort(folders.begin(), folders.end());
  COCA_CHECK(!folders.empty(), "image folder ", root, " has no class sub-folders (expected root/<class>/<image>)");
  InputListing out;
  std::vector<int32_t> folder_label(folders.size());
  if (!class_ids_file.empty()) {
    // Labels from the position of each folder's name in the id list (e.g. ImageNet's WordNet
    // ids in class-index order); every listed class is a class of the set, folders or not.
    const std::vector<std::string> ids = read_lines(class_ids_file, "class ids file");
    COCA_CHECK(!ids.empty(), class_ids_file, ": no class ids");
    std::map<std::string, int32_t> index_of;
    for (size_t c = 0; c < ids.size(); ++c)
      COCA_CHECK(index_of.emplace(ids[c], static_cast<int32_t>(c)).second, class_ids_file, ": class id '", ids[c],
                 "' is listed twice");
    for (size_t f = 0; f < folders.size(); ++f) {
      auto it = index_of.find(folders[f]);
      COCA_CHECK(it != index_of.end(), "image folder ", root, ": class folder '", folders[f], "' is not in ",
                 class_ids_file);
      folder_label[f] = it->second;
    }
    out.classnames = classnames_file.empty() ? ids : names_for(ids, classnames_file, "class ids", class_ids_file);
  } else {
    for (size_t f = 0; f < folders.size(); ++f) folder_label[f] = static_cast<int32_t>(f);
    if (classnames_file.empty()) {
      for (std::string name : folders) {
        std::replace(name.begin(), name.end(), '_', ' ');
        out.classnames.push_back(name);
      }
    } else {
      out.classnames = names_for(folders, classnames_file, "class folders", root);
    }
  }
  for (size_t c = 0; c < folders.size(); ++c) {
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(fs::path(root) / folders[c])) {
      const std::string name = e.path().filename().string();
      if (name[0] == '.' || e.is_directory()) continue;
      files.push_back(name);
    }
    std::sort(files.begin(), files.end());
    for (const auto& name : files) {
      WorkItem item;
      item.key = folders[c] + "/" + name;
      item.image.path = (fs::path(root) / folders[c] / name).string();
      item.label = folder_label[c];
      item.captions.push_back(out.classnames[static_cast<size_t>(item.label)]);
      out.items.push_back(std::move(item));
    }
  }
  return out;
}

bool read_image_bytes(const ImageSource& src, std::vector<uint8_t>& out, std::string& reason, std::string& detail) {
  std::error_code ec;
  if (!fs::exists(src.path, ec)) {
    reason = "missing_file";
    detail = src.path;
    return false;
  }
  std::ifstream f(src.path, std::ios::binary);
  if (!f.good() || fs::is_directory(src.path, ec)) {
    reason = "unreadable_file";
    detail = src.path;
    return false;
  }
  int64_t size = src.size;
  if (size < 0) {
    f.seekg(0, std::ios::end);
    size = f.tellg();
    f.seekg(0);
  } else {
    f.seekg(src.offset);
  }
  out.resize(static_cast<size_t>(std::max<int64_t>(size, 0)));
  if (size > 0) f.read(reinterpret_cast<char*>(out.data()), size);
  if (!f.good()) {
    reason = "unreadable_file";
    detail = str_cat(src.path, ": read failed");
    return false;
  }
  return true;
}

}  // namespace coca
