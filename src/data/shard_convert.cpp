#include "coca/data/shard_convert.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <regex>

#include "coca/data/progress.h"
#include "coca/data/tar_stream.h"
#include "coca/tensor/random.h"

namespace fs = std::filesystem;

namespace coca {

std::string part_shard_name(int64_t part, int64_t k) {
  char buf[48];
  std::snprintf(buf, sizeof(buf), "shard-%05lld-%03lld.h5", static_cast<long long>(part), static_cast<long long>(k));
  return buf;
}

std::string part_record_path(const std::string& out_dir, int64_t part) {
  char buf[48];
  std::snprintf(buf, sizeof(buf), "part-%05lld.json", static_cast<long long>(part));
  return (fs::path(out_dir) / kConversionDirName / buf).string();
}

nlohmann::json PartRecord::to_json() const {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& s : shards) list.push_back({{"file", s.file}, {"samples", s.samples}});
  return {{"part", part}, {"input", input}, {"shards", list}, {"report", report}};
}

PartRecord PartRecord::from_json(const nlohmann::json& j, const std::string& where) {
  try {
    PartRecord r;
    r.part = j.at("part").get<int64_t>();
    r.input = j.at("input").get<std::string>();
    for (const auto& s : j.at("shards")) r.shards.push_back({s.at("file").get<std::string>(), s.at("samples").get<int64_t>()});
    r.report = j.at("report");
    return r;
  } catch (const nlohmann::json::exception& e) {
    throw Error(str_cat(where, ": malformed part record: ", e.what()));
  }
}

bool load_part_record(const std::string& out_dir, int64_t part, PartRecord& record) {
  const std::string path = part_record_path(out_dir, part);
  std::ifstream f(path);
  if (!f.good()) return false;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    throw Error(str_cat(path, ": not valid JSON (", e.what(), "); remove it to convert that part again"));
  }
  record = PartRecord::from_json(j, path);
  COCA_CHECK(record.part == part, path, ": records part ", record.part, ", expected ", part);
  return true;
}

void write_json_atomically(const std::string& path, const nlohmann::json& j) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    COCA_CHECK(f.good(), "cannot write ", tmp);
    f << j.dump(1) << "\n";
    f.flush();
    COCA_CHECK(f.good(), "writing ", tmp, " failed");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  COCA_CHECK(!ec, "renaming ", tmp, " to ", path, ": ", ec.message());
}

namespace {

// One part: its items in blocks through a ShardBuilder, then its shards renamed into place
// and its record written.
class PartWriter {
 public:
  PartWriter(const ConvertOptions& o, int64_t part, std::string input) : part_(part), input_(std::move(input)) {
    BuildOptions b = o.build;
    b.temp_prefix = str_cat(".tmp-p", part, "-");
    b.progress = false;
    builder_ = std::make_unique<ShardBuilder>(b);
    out_dir_ = b.out_dir;
    block_size_ = builder_->block_items();
  }
  void item(WorkItem&& item) {
    block_.push_back(std::move(item));
    if (block_.size() >= block_size_) flush();
  }
  void issue(const InputIssue& issue) { report_.add_listing_issue(issue); }
  int64_t written() const { return report_.written; }
  PartRecord finish() {
    flush();
    const LocalShards local = builder_->finish();
    PartRecord rec;
    rec.part = part_;
    rec.input = input_;
    std::vector<std::string> finals;
    for (size_t k = 0; k < local.temp_paths.size(); ++k) {
      rec.shards.push_back({part_shard_name(part_, static_cast<int64_t>(k)), local.counts[k]});
      finals.push_back((fs::path(out_dir_) / rec.shards.back().file).string());
    }
    publish_shard_files(local.temp_paths, finals);
    rec.report = report_.to_json();
    write_json_atomically(part_record_path(out_dir_, part_), rec.to_json());
    return rec;
  }

 private:
  void flush() {
    if (block_.empty()) return;
    builder_->add(block_, report_);
    block_.clear();
  }
  int64_t part_;
  std::string input_, out_dir_;
  std::unique_ptr<ShardBuilder> builder_;
  std::vector<WorkItem> block_;
  size_t block_size_ = 64;
  SkipReport report_;
};

std::string absolute_name(const std::string& input) {
  return is_pipe_input(input) ? input : fs::absolute(input).lexically_normal().string();
}

// What every kind of input shares: which parts are this rank's, which are finished, progress.
class PartLoop {
 public:
  PartLoop(const ConvertOptions& o, int64_t total_parts_or_0, const char* unit)
      : o_(o),
        progress_(o.rank == 0 ? "coca-shard (rank 0)" : str_cat("coca-shard (rank ", o.rank, ")"), total_parts_or_0,
                  o.progress, unit) {}
  bool mine(int64_t local_part) const { return local_part % o_.world == o_.rank; }
  // Whether this rank converts the part now (false: another rank's, or already finished).
  bool start(int64_t local_part) {
    if (!mine(local_part)) return false;
    PartRecord rec;
    if (load_part_record(o_.build.out_dir, o_.first_part + local_part, rec)) {
      ++result.resumed;
      tick();
      return false;
    }
    return true;
  }
  void done(const PartRecord& rec) {
    ++result.converted;
    for (const auto& s : rec.shards) samples_ += s.samples;
    tick();
  }
  void finish() { progress_.finish(); }
  ConvertResult result;

 private:
  void tick() {
    const double t = progress_.elapsed_s();
    progress_.update(result.converted + result.resumed,
                     str_cat(samples_, " samples written, ", t > 0 ? static_cast<int64_t>(samples_ / t) : 0,
                             " samples/s"));
  }
  const ConvertOptions& o_;
  Progress progress_;
  int64_t samples_ = 0;
};

ConvertResult convert_wds(const ConvertOptions& o) {
  const int64_t n = static_cast<int64_t>(o.inputs.size());
  int64_t mine = 0;
  for (int64_t p = 0; p < n; ++p) mine += p % o.world == o.rank;
  PartLoop loop(o, mine, "files");
  for (int64_t p = 0; p < n; ++p) {
    if (!loop.start(p)) continue;
    const std::string& input = o.inputs[static_cast<size_t>(p)];
    PartWriter part(o, o.first_part + p, absolute_name(input));
    std::vector<InputIssue> issues;
    ByteSource source(input);
    WdsSampleReader reader(source, issues);
    WorkItem item;
    size_t seen_issues = 0;
    while (reader.next(item)) {
      part.item(std::move(item));
      for (; seen_issues < issues.size(); ++seen_issues) part.issue(issues[seen_issues]);
    }
    for (; seen_issues < issues.size(); ++seen_issues) part.issue(issues[seen_issues]);
    source.finish();
    loop.done(part.finish());
  }
  loop.finish();
  loop.result.parts = n;
  return loop.result;
}

ConvertResult convert_csv_streaming(const ConvertOptions& o) {
  const std::string& path = o.inputs.at(0);
  CsvTable table(path, o.csv);
  PartLoop loop(o, 0, "parts");
  std::unique_ptr<PartWriter> part;
  int64_t current = -1, rows = 0, ordinal = 0;
  bool has_item = false;
  WorkItem item;
  InputIssue issue;
  while (table.next(ordinal, has_item, item, issue)) {
    if (o.max_items >= 0 && ordinal >= o.max_items) break;
    rows = ordinal + 1;
    const int64_t p = ordinal / o.rows_per_part;
    if (p != current) {
      if (part) loop.done(part->finish());
      part.reset();
      current = p;
      if (loop.start(p))
        part = std::make_unique<PartWriter>(o, o.first_part + p,
                                            str_cat(absolute_name(path), " rows ", p * o.rows_per_part + 1, "-",
                                                    (p + 1) * o.rows_per_part));
    }
    if (!part) continue;
    if (has_item) part->item(std::move(item));
    else part->issue(issue);
  }
  if (part) loop.done(part->finish());
  loop.finish();
  loop.result.parts = (rows + o.rows_per_part - 1) / o.rows_per_part;
  return loop.result;
}

InputListing list_whole(const ConvertOptions& o) {
  const std::string& input = o.inputs.at(0);
  if (o.format == "csv") return list_csv(input, o.csv);
  if (o.format == "coco") return list_coco(input, o.images_root);
  if (o.format == "folder") return list_image_folder(input, o.classnames_file, o.class_ids_file);
  throw Error(str_cat("unknown --format '", o.format, "' (csv, coco, wds, folder)"));
}

ConvertResult convert_listed(const ConvertOptions& o) {
  InputListing listing = list_whole(o);
  auto& items = listing.items;
  if (o.shuffle_seed >= 0) {  // Fisher-Yates with our seeded generator: the same order on every platform
    Generator gen(static_cast<uint64_t>(o.shuffle_seed));
    for (size_t i = items.size(); i > 1; --i) std::swap(items[i - 1], items[gen.below(i)]);
  }
  if (o.max_items >= 0 && static_cast<int64_t>(items.size()) > o.max_items) items.resize(static_cast<size_t>(o.max_items));
  const int64_t n_items = static_cast<int64_t>(items.size());
  // Problems found while listing belong to part 0 (there is one even without items).
  const int64_t n = std::max<int64_t>((n_items + o.rows_per_part - 1) / o.rows_per_part, listing.issues.empty() ? 0 : 1);
  int64_t mine = 0;
  for (int64_t p = 0; p < n; ++p) mine += p % o.world == o.rank;
  ConvertOptions with_classes = o;
  with_classes.build.layout.classnames = listing.classnames;
  PartLoop loop(with_classes, mine, "parts");
  for (int64_t p = 0; p < n; ++p) {
    if (!loop.start(p)) continue;
    const int64_t lo = p * o.rows_per_part, hi = std::min(n_items, lo + o.rows_per_part);
    PartWriter part(with_classes, o.first_part + p, str_cat(absolute_name(o.inputs.at(0)), " items ", lo + 1, "-", hi));
    if (p == 0)
      for (const auto& issue : listing.issues) part.issue(issue);
    for (int64_t i = lo; i < hi; ++i) part.item(std::move(items[static_cast<size_t>(i)]));
    loop.done(part.finish());
  }
  loop.finish();
  loop.result.parts = n;
  loop.result.classnames = listing.classnames;
  return loop.result;
}

}  // namespace

std::vector<std::string> folder_classnames(const ConvertOptions& o) {
  return list_image_folder(o.inputs.at(0), o.classnames_file, o.class_ids_file).classnames;
}

ConvertResult convert_parts(const ConvertOptions& o) {
  COCA_CHECK(o.rows_per_part > 0, "--rows-per-part must be positive");
  COCA_CHECK(o.world >= 1 && o.rank >= 0 && o.rank < o.world, "rank ", o.rank, " is not in a world of ", o.world);
  fs::create_directories(fs::path(o.build.out_dir) / kConversionDirName);
  if (o.format == "wds") return convert_wds(o);
  if (o.format == "csv" && o.shuffle_seed < 0) return convert_csv_streaming(o);
  return convert_listed(o);
}

void clean_unfinished_parts(const std::string& out_dir, int64_t first_part) {
  static const std::regex temp(R"(\.tmp-[rp]\d+-shard-\d{5,}\.h5)"), part_shard(R"(shard-(\d{5,})-\d{3,}\.h5)");
  std::vector<fs::path> doomed;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(out_dir, ec)) {
    const std::string name = e.path().filename().string();
    std::smatch m;
    if (std::regex_match(name, temp)) {
      doomed.push_back(e.path());
    } else if (std::regex_match(name, m, part_shard)) {
      const int64_t part = std::stoll(m[1].str());
      if (part >= first_part && !fs::exists(part_record_path(out_dir, part))) doomed.push_back(e.path());
    }
  }
  COCA_CHECK(!ec, "listing ", out_dir, ": ", ec.message());
  for (const auto& p : doomed) {
    fs::remove(p, ec);
    COCA_CHECK(!ec, "removing ", p.string(), ": ", ec.message());
  }
}

}  // namespace coca
