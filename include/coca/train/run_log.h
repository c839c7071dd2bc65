#pragma once
// What users see: the progress line on rank 0 and <logs>/<name>/metrics.jsonl (one JSON
// record per logged step and per evaluation; launch/plot_metrics.py draws it).
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

namespace coca::train {

class MetricsFile {
 public:
  MetricsFile() = default;
  explicit MetricsFile(const std::string& path);  // appends (a resumed run continues the file)
  ~MetricsFile();
  MetricsFile(const MetricsFile&) = delete;
  MetricsFile& operator=(const MetricsFile&) = delete;
  void write(const nlohmann::json& record);  // one line, flushed

 private:
  std::FILE* f_ = nullptr;
  std::string path_;
};

std::string format_duration(double seconds);  // "1h02m", "3m05s", "42s"

}  // namespace coca::train
