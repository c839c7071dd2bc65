#include "coca/data/progress.h"

#include <cstdio>

namespace coca {

std::string format_duration(double seconds) {
  if (seconds < 0 || seconds > 1e8) return "?";
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof(buf), "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  else
    std::snprintf(buf, sizeof(buf), "%lld:%02lld", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  return buf;
}

Progress::Progress(std::string label, int64_t total, bool enabled, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), enabled_(enabled) {
  start_ = last_print_ = std::chrono::steady_clock::now();
}

double Progress::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::update(int64_t done) {
  last_done_ = done;
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (std::chrono::duration<double>(now - last_print_).count() < 1.0) return;
  last_print_ = now;
  print(done, false);
}

void Progress::update(int64_t done, const std::string& detail) {
  detail_ = detail;
  update(done);
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (enabled_) print(last_done_, true);
}

void Progress::print(int64_t done, bool final_line) {
  const double t = elapsed_s();
  const double rate = t > 0 ? done / t : 0.0;
  const std::string u = unit_.empty() ? "" : " " + unit_;
  const std::string d = detail_.empty() ? "" : "; " + detail_;
  if (final_line) {
    std::fprintf(stderr, "%s: %lld%s in %s (%.0f%s/s)%s\n", label_.c_str(), static_cast<long long>(done), u.c_str(),
                 format_duration(t).c_str(), rate, u.c_str(), d.c_str());
  } else if (total_ > 0) {
    const double eta = rate > 0 ? (total_ - done) / rate : -1;
    std::fprintf(stderr, "%s: %lld/%lld%s (%.0f%%) %.0f%s/s, ETA %s%s\n", label_.c_str(), static_cast<long long>(done),
                 static_cast<long long>(total_), u.c_str(), 100.0 * done / total_, rate, u.c_str(),
                 format_duration(eta).c_str(), d.c_str());
  } else {
    std::fprintf(stderr, "%s: %lld%s %.0f%s/s%s\n", label_.c_str(), static_cast<long long>(done), u.c_str(), rate,
                 u.c_str(), d.c_str());
  }
}

}  // namespace coca
