#include "coca/train/run_log.h"

#include <fstream>

#include "coca/train/checkpoint.h"
#include "coca/train/tensorboard.h"

#include "coca/tensor/error.h"

namespace coca::train {

namespace {

// Keeps the records of steps <= `step` in `path` (and lines without a step); moves the rest,
// and any line cut short by a kill, to <path>.replaced.
void drop_records_after(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in.good()) return;
  std::string line, kept, moved;
  int64_t n_moved = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    bool keep = false;
    try {
      const auto j = nlohmann::json::parse(line);
      keep = !j.contains("step") || j.at("step").get<int64_t>() <= step;
    } catch (const std::exception&) {
      keep = false;  // a partial line from an interrupted write
    }
    (keep ? kept : moved) += line + "\n";
    n_moved += keep ? 0 : 1;
  }
  in.close();
  if (n_moved == 0) return;
  {
    std::ofstream rep(path + ".replaced", std::ios::app);
    rep << moved;
    COCA_CHECK(rep.good(), "cannot write ", path, ".replaced");
  }
  write_file_durable(path, kept);
  std::printf("metrics: %lld record(s) after step %lld moved to %s.replaced (the resumed run writes those steps again)\n",
              static_cast<long long>(n_moved), static_cast<long long>(step), path.c_str());
}

}  // namespace

MetricsFile::MetricsFile(const std::string& path, int64_t resumed_at) : path_(path) {
  if (resumed_at >= 0) drop_records_after(path, resumed_at);
  f_ = std::fopen(path.c_str(), "a");
  COCA_CHECK(f_ != nullptr, "cannot open metrics file ", path);
}

MetricsFile::~MetricsFile() {
  if (f_) std::fclose(f_);
}

void MetricsFile::also_to_tensorboard(std::unique_ptr<EventFileWriter> events) { events_ = std::move(events); }

void MetricsFile::write(const nlohmann::json& record) {
  if (!f_) return;
  const std::string line = record.dump() + "\n";
  COCA_CHECK(std::fwrite(line.data(), 1, line.size(), f_) == line.size() && std::fflush(f_) == 0,
             "write to ", path_, " failed (disk full?)");
  if (events_) events_->write(record);
}

std::string format_duration(double s) {
  if (!(s >= 0) || s > 1e8) return "?";
  char buf[32];
  const long t = static_cast<long>(s + 0.5);
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t % 3600) / 60);
  else if (t >= 60) std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%lds", t);
  return buf;
}

}  // namespace coca::train
