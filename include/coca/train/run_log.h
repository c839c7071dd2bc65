#pragma once
// What users see: the progress line on rank 0 and <logs>/<name>/metrics.jsonl (one JSON
// record per logged step and per evaluation; launch/plot_metrics.py draws it), and with
// --report-to tensorboard the same numbers as TensorBoard event files (tensorboard.h).
#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace coca::train {

class EventFileWriter;

class MetricsFile {
 public:
  MetricsFile() = default;
  // Appends: a resumed run continues the file. With `resumed_at` >= 0 the records of steps
  // after it (written before the interruption, or by a timeline a rolled-back resume
  // replaces) are first moved to <path>.replaced, so that each step appears once.
  explicit MetricsFile(const std::string& path, int64_t resumed_at = -1);
  ~MetricsFile();
  MetricsFile(const MetricsFile&) = delete;
  MetricsFile& operator=(const MetricsFile&) = delete;
  void write(const nlohmann::json& record);  // one line, flushed
  // --report-to tensorboard: every record written from now on also goes to this event file.
  void also_to_tensorboard(std::unique_ptr<EventFileWriter> events);

 private:
  std::FILE* f_ = nullptr;
  std::string path_;
  std::unique_ptr<EventFileWriter> events_;
};

std::string format_duration(double seconds);  // "1h02m", "3m05s", "42s"

}  // namespace coca::train
