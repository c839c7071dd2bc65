#pragma once
// coca-shard's unit of work and of resumption: a *part*. A part is one input file (a
// WebDataset tar, or a pipe: command's tar), or a block of rows_per_part rows of a caption
// table, or of listed items (COCO, image folders, a --shuffle-seed order). Parts are numbered
// in input order; rank r of W converts the parts p with (p - first_part) % W == r. A part's
// samples go to its own shards, shard-PPPPP-KKK.h5 (part P, K-th shard of the part), so the
// shards are the same whatever the number of ranks, and a part is finished when its record
// <out>/.coca-shard/part-PPPPP.json exists: written (atomically) after its shards are renamed
// into place. A rerun skips the parts that have a record and redoes the others from the
// start; the index lists the shards of the records.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "coca/data/shard_build.h"
#include "coca/data/shard_index.h"
#include "coca/data/shard_inputs.h"

namespace coca {

struct PartRecord {
  int64_t part = 0;
  std::string input;  // what it was made of: a tar's path, "pipe:...", "<table> rows a-b"
  std::vector<ShardEntry> shards;
  nlohmann::json report;  // SkipReport::to_json() of the part
  nlohmann::json to_json() const;
  static PartRecord from_json(const nlohmann::json& j, const std::string& where);
};

std::string part_shard_name(int64_t part, int64_t k);  // "shard-00042-000.h5"
std::string part_record_path(const std::string& out_dir, int64_t part);
bool load_part_record(const std::string& out_dir, int64_t part, PartRecord& record);
// Writes `j` to `path` through a temporary file and a rename (readers see old or new, whole).
void write_json_atomically(const std::string& path, const nlohmann::json& j);

struct ConvertOptions {
  std::string format;               // csv, coco, wds, folder
  std::vector<std::string> inputs;  // wds: the tars (braces expanded); else one table / json / root
  CsvOptions csv;
  std::string images_root;          // coco
  std::string classnames_file, class_ids_file;  // folder
  int64_t rows_per_part = 10000;    // csv, coco, folder
  int64_t shuffle_seed = -1;        // >= 0: csv, coco, folder listed whole and shuffled first
  int64_t max_items = -1;           // csv: rows; listed inputs: items
  int64_t first_part = 0;           // part numbers start here (after an existing set's parts)
  int rank = 0, world = 1;
  BuildOptions build;               // out_dir, layout (classnames filled in for folder), ...
  bool progress = true;
};

struct ConvertResult {
  int64_t parts = 0;                    // parts the inputs make (all ranks')
  int64_t converted = 0;                // parts this rank converted in this run
  int64_t resumed = 0;                  // parts this rank found finished
  std::vector<std::string> classnames;  // folder input
};

// Lists folder classes (for the layout) without converting anything.
std::vector<std::string> folder_classnames(const ConvertOptions& options);

// Converts this rank's unfinished parts.
ConvertResult convert_parts(const ConvertOptions& options);

// Removes temporaries a killed run left (.tmp-* shards) and the shards of parts at or after
// first_part that have no record. Rank 0, before the ranks start.
void clean_unfinished_parts(const std::string& out_dir, int64_t first_part);

}  // namespace coca
