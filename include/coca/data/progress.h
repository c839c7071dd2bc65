#pragma once
// Progress lines for long work: "label: 1200/5000 (24%) 310/s, ETA 0:12", at most one a
// second, on stderr, with a final line when done.
#include <chrono>
#include <cstdint>
#include <string>

namespace coca {

class Progress {
 public:
  Progress(std::string label, int64_t total, bool enabled = true, std::string unit = "");
  void update(int64_t done);
  // `detail` is printed after the rate (e.g. "12000 samples, 950 samples/s").
  void update(int64_t done, const std::string& detail);
  void finish();
  double elapsed_s() const;

 private:
  void print(int64_t done, bool final_line);
  std::string label_, unit_, detail_;
  int64_t total_;
  bool enabled_;
  bool finished_ = false;
  int64_t last_done_ = 0;
  std::chrono::steady_clock::time_point start_, last_print_;
};

std::string format_duration(double seconds);  // "1:02:03" or "2:03"

}  // namespace coca
