#pragma once
// The four inputs coca-shard understands, each turned into a list of work items in a fixed
// order (so every MPI rank derives the same list and takes its own contiguous block):
//   csv     a CSV/TSV with image-path and caption columns (OpenCLIP: "filepath", "title", tab)
//   coco    a COCO captions JSON plus its image folder; one sample per caption
//   wds     WebDataset tar shards as img2dataset writes them (<key>.jpg|.png|.webp, <key>.txt
//           and/or <key>.json with "key" and "caption")
//   folder  root/<class>/<image> for classification sets; class names from folders or a file,
//           labels from sorted folder order or from a class ids file (ImageNet WordNet ids)
// Problems found while listing (a malformed row, a tar member without its pair, a cut-off
// tar) are returned as issues and end up in the skip report.
#include <cstdint>
#include <istream>
#include <memory>
#include <string>
#include <vector>

namespace coca {

// Where an item's image bytes are: a whole file, a byte range inside one, or in memory (tar
// members read from a stream; `path` then names the member for messages, offset and size
// say where it was in the archive).
struct ImageSource {
  std::string path;
  int64_t offset = 0;
  int64_t size = -1;  // -1: the whole file
  bool in_memory = false;
  std::vector<uint8_t> data;  // in_memory: the bytes
};

struct WorkItem {
  std::string key;                    // source identifier stored in the shard's "keys"
  ImageSource image;
  std::vector<std::string> captions;  // one sample per caption (raw bytes, validated later)
  std::vector<std::string> caption_keys;  // per-caption key when several (COCO), else empty
  int32_t label = -1;
};

struct InputIssue {
  std::string reason;  // e.g. "malformed_row", "missing_caption", "truncated_tar"
  std::string key;
  std::string detail;
};

struct InputListing {
  std::vector<WorkItem> items;
  std::vector<InputIssue> issues;
  std::vector<std::string> classnames;  // folder input only
};

struct CsvOptions {
  char separator = '\t';
  std::string image_column = "filepath";
  std::string caption_column = "title";
  std::string images_root;  // folder relative paths are under; empty: the table's own folder
};

InputListing list_csv(const std::string& path, const CsvOptions& options);
InputListing list_coco(const std::string& json_path, const std::string& images_root);
// Every sample of the tars (files or pipe: inputs) in memory; coca-shard itself streams them
// with WdsSampleReader (tar_stream.h).
InputListing list_webdataset(const std::vector<std::string>& tar_paths);
// classnames_file: empty = folder names with '_' read as spaces; else one name per line in
// sorted-folder order, or "folder<TAB>name" lines.
// class_ids_file (optional): one class id per line in label order (e.g. ImageNet's WordNet ids);
// each folder must be named by one of them and takes its position as label; the set's classes
// are all the listed ids, named by classnames_file (one per id in the same order, or
// "id<TAB>name" lines) or by the ids themselves.
InputListing list_image_folder(const std::string& root, const std::string& classnames_file,
                               const std::string& class_ids_file = "");

// Reads an ImageSource's bytes; returns false when the file is missing or unreadable
// (reason set to "missing_file" or "unreadable_file").
bool read_image_bytes(const ImageSource& src, std::vector<uint8_t>& out, std::string& reason, std::string& detail);

// One row of a CSV/TSV text.
struct DelimitedRow {
  int64_t line = 0;       // 1-based line the row starts on
  int64_t last_line = 0;  // the line it ends on (later than `line` when a quoted field holds newlines)
  std::vector<std::string> fields;
  // > 0: a quoted field opened on this line and the file ended inside it. The row is unusable
  // and parsing resumed on the next line, since no later quote can belong to that field.
  int64_t unclosed_quote_line = 0;
};

// Reads a CSV/TSV stream row by row (RFC 4180 quoting with '"'; newlines inside quotes belong
// to the field). Empty lines are dropped. The stream must be seekable: a quote the file ends
// inside (or one whose field grows past 16 MiB) gives a row with unclosed_quote_line set and
// parsing resumes on the line after the quote.
class DelimitedReader {
 public:
  DelimitedReader(std::istream& in, char separator);
  bool next(DelimitedRow& row);

 private:
  int get();   // the next byte, or -1
  int peek();
  std::istream& in_;
  char sep_;
  int64_t pos_ = 0;   // bytes consumed
  int64_t line_ = 1;
  bool bom_checked_ = false;
};

// The whole text at once (the same rules as DelimitedReader).
std::vector<DelimitedRow> parse_delimited(const std::string& text, char separator);

// A caption table read row by row: each data row becomes an item or an issue (malformed_row,
// unclosed_quote), with its ordinal among the data rows.
class CsvTable {
 public:
  CsvTable(const std::string& path, const CsvOptions& options);
  ~CsvTable();
  // False at the end. Exactly one of `item` / `issue` is filled (has_item tells which).
  bool next(int64_t& row_ordinal, bool& has_item, WorkItem& item, InputIssue& issue);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace coca
