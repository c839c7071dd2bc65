#include "coca/data/shard_inputs.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "coca/data/tar_stream.h"
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

}  // namespace

DelimitedReader::DelimitedReader(std::istream& in, char separator) : in_(in), sep_(separator) {}

int DelimitedReader::get() {
  const int c = in_.rdbuf()->sbumpc();
  if (c == std::char_traits<char>::eof()) return -1;
  ++pos_;
  return c & 0xff;
}

int DelimitedReader::peek() {
  const int c = in_.rdbuf()->sgetc();
  return c == std::char_traits<char>::eof() ? -1 : (c & 0xff);
}

bool DelimitedReader::next(DelimitedRow& out) {
  // A quoted field longer than this is taken for a stray quote, as one the file ends inside:
  // it would otherwise hold the rest of a large table in memory.
  constexpr size_t kMaxQuotedField = size_t{16} << 20;
  if (!bom_checked_) {
    bom_checked_ = true;
    if (peek() == 0xEF) {
      char bom[3] = {0, 0, 0};
      const auto got = in_.rdbuf()->sgetn(bom, 3);
      if (got == 3 && std::memcmp(bom, "\xEF\xBB\xBF", 3) == 0) pos_ = 3;
      else in_.rdbuf()->pubseekpos(0);
    }
  }
  for (;;) {
    DelimitedRow row;
    row.line = line_;
    std::string field;
    bool in_quotes = false, field_started = false, overflow = false, empty_line = false;
    int64_t quote_pos = 0, quote_line = 0;
    for (int c; (c = get()) >= 0;) {
      if (in_quotes) {
        if (c == '"') {
          if (peek() == '"') {
            field.push_back('"');
            get();
          } else {
            in_quotes = false;
          }
        } else {
          field.push_back(static_cast<char>(c));
          if (c == '\n') ++line_;
          if (field.size() > kMaxQuotedField) {
            overflow = true;
            break;
          }
        }
      } else if (c == '"' && !field_started) {
        in_quotes = field_started = true;
        quote_pos = pos_ - 1;
        quote_line = line_;
      } else if (c == sep_) {
        row.fields.push_back(std::move(field));
        field.clear();
        field_started = false;
      } else if (c == '\n') {
        row.fields.push_back(std::move(field));
        row.last_line = line_++;
        empty_line = row.fields.size() == 1 && row.fields[0].empty();
        if (empty_line) break;
        out = std::move(row);
        return true;
      } else if (c == '\r' && peek() == '\n') {
        // the '\n' ends the row
      } else {
        field.push_back(static_cast<char>(c));
        field_started = true;
      }
    }
    if (empty_line) continue;
    if (in_quotes || overflow) {
      // The file ended inside quotes: the field swallowed every line after the one it opened
      // on. No later quote can close it, so those lines are rows of their own: report this
      // row and read again from the line after the quote.
      out = DelimitedRow();
      out.line = row.line;
      out.last_line = quote_line;
      out.unclosed_quote_line = quote_line;
      in_.clear();
      COCA_CHECK(in_.rdbuf()->pubseekpos(quote_pos) == std::streampos(quote_pos),
                 "caption table: cannot seek back to byte ", quote_pos, " (an unclosed quote needs a seekable file)");
      pos_ = quote_pos;
      for (int c; (c = get()) >= 0 && c != '\n';) {
      }
      line_ = quote_line + 1;
      return true;
    }
    if (!field.empty() || !row.fields.empty()) {
      row.fields.push_back(std::move(field));
      row.last_line = line_;
      out = std::move(row);
      return true;
    }
    return false;
  }
}

std::vector<DelimitedRow> parse_delimited(const std::string& text, char sep) {
  std::istringstream in(text);
  DelimitedReader reader(in, sep);
  std::vector<DelimitedRow> rows;
  for (DelimitedRow row; reader.next(row);) rows.push_back(std::move(row));
  return rows;
}

struct CsvTable::Impl {
  std::ifstream file;
  std::unique_ptr<DelimitedReader> reader;
  std::string path, file_name;
  std::vector<std::string> header;
  size_t img_col = 0, cap_col = 0;
  fs::path base;
  int64_t ordinal = 0;
};

CsvTable::CsvTable(const std::string& path, const CsvOptions& options) : impl_(std::make_unique<Impl>()) {
  Impl& t = *impl_;
  t.path = path;
  std::error_code ec;
  COCA_CHECK(!fs::is_directory(path, ec), "caption table ", path, " is a directory");
  t.file.open(path, std::ios::binary);
  COCA_CHECK(t.file.good(), "cannot open caption table ", path);
  t.reader = std::make_unique<DelimitedReader>(t.file, options.separator);
  DelimitedRow head;
  COCA_CHECK(t.reader->next(head), path, ": empty caption table (expected a header row)");
  COCA_CHECK(head.unclosed_quote_line == 0, path, ":", head.unclosed_quote_line,
             ": the header row opens a quoted field that is never closed");
  t.header = std::move(head.fields);
  auto column = [&](const std::string& name) {
    auto it = std::find(t.header.begin(), t.header.end(), name);
    COCA_CHECK(it != t.header.end(), path, ": no column '", name, "' in the header (columns: ",
               [&] { std::string s; for (const auto& h : t.header) s += (s.empty() ? "" : ", ") + h; return s; }(),
               "); set the column names with --csv-image-key/--csv-caption-key");
    return static_cast<size_t>(it - t.header.begin());
  };
  t.img_col = column(options.image_column);
  t.cap_col = column(options.caption_column);
  t.file_name = fs::path(path).filename().string();
  // Relative image paths: under --images-root when given, else next to the table.
  t.base = options.images_root.empty() ? fs::path(path).parent_path() : fs::path(options.images_root);
}

CsvTable::~CsvTable() = default;

bool CsvTable::next(int64_t& row_ordinal, bool& has_item, WorkItem& item, InputIssue& issue) {
  Impl& t = *impl_;
  DelimitedRow row;
  if (!t.reader->next(row)) {
    COCA_CHECK(!t.file.bad(), "reading caption table ", t.path, " failed");
    return false;
  }
  row_ordinal = t.ordinal++;
  const std::string key = str_cat(t.file_name, ":", row.line);
  has_item = false;
  if (row.unclosed_quote_line > 0) {
    issue = {"unclosed_quote", key,
             str_cat("the quoted field opened on line ", row.unclosed_quote_line,
                     " is never closed; the rows after it were read from line ", row.unclosed_quote_line + 1)};
    return true;
  }
  if (row.fields.size() != t.header.size()) {
    issue = {"malformed_row", key,
             str_cat(row.fields.size(), " fields, header has ", t.header.size(),
                     row.last_line > row.line ? str_cat(" (the row spans lines ", row.line, "-", row.last_line, ")")
                                              : std::string())};
    return true;
  }
  item = WorkItem();
  const std::string& p = row.fields[t.img_col];
  item.image.path = fs::path(p).is_absolute() ? p : (t.base / p).string();
  item.key = p;
  item.captions.push_back(row.fields[t.cap_col]);
  has_item = true;
  return true;
}

InputListing list_csv(const std::string& path, const CsvOptions& options) {
  CsvTable table(path, options);
  InputListing out;
  int64_t ordinal = 0;
  bool has_item = false;
  WorkItem item;
  InputIssue issue;
  while (table.next(ordinal, has_item, item, issue)) {
    if (has_item) out.items.push_back(std::move(item));
    else out.issues.push_back(std::move(issue));
  }
  return out;
}

namespace {

// A COCO id: an integer JSON number within int64 (a number such as 3e69 is refused, not cast).
int64_t coco_id(const nlohmann::json& v, const std::string& json_path, const char* field) {
  const bool ok = v.is_number_unsigned() ? v.get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX) : v.is_number_integer();
  COCA_CHECK(ok, json_path, ": malformed COCO record: \"", field, "\" is not an integer id: ", v.dump());
  return v.get<int64_t>();
}

}  // namespace

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
      const int64_t id = coco_id(im.at("id"), json_path, "id");
      const std::string file = im.at("file_name").get<std::string>();
      item.image.path = (fs::path(images_root) / file).string();
      item.key = str_cat("coco:", id);
      by_id[id] = out.items.size();
      out.items.push_back(std::move(item));
    }
    for (const auto& ann : j.at("annotations")) {
      const int64_t image_id = coco_id(ann.at("image_id"), json_path, "image_id");
      const int64_t ann_id = ann.contains("id") ? coco_id(ann.at("id"), json_path, "id") : -1;
      const std::string ann_key = str_cat("coco:", image_id, ":", ann_id);
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

InputListing list_webdataset(const std::vector<std::string>& tar_paths) {
  InputListing out;
  for (const std::string& tar : tar_paths) {
    ByteSource source(tar);
    WdsSampleReader reader(source, out.issues);
    for (WorkItem item; reader.next(item);) out.items.push_back(std::move(item));
    source.finish();
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
  if (src.in_memory) {
    out = src.data;
    return true;
  }
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
