#include "coca/kernels/cpu/profile.h"

#include <time.h>

#include <algorithm>
#include <map>

namespace coca::cpu {

namespace detail {
thread_local bool t_profiling = false;
}

namespace {

struct Total {
  double seconds = 0;
  int64_t calls = 0;
};
// Keyed by name text (two literals with the same text may have two addresses).
thread_local std::map<std::string, Total> t_totals;
thread_local double t_children = 0;  // inclusive time of the scopes nested in the open one

}  // namespace

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

void set_cpu_profiling(bool on) {
  if (on) {
    t_totals.clear();
    t_children = 0;
  }
  detail::t_profiling = on;
}

std::vector<ProfileEntry> cpu_profile() {
  std::vector<ProfileEntry> out;
  for (const auto& [name, t] : t_totals) out.push_back({name, t.seconds, t.calls});
  std::sort(out.begin(), out.end(), [](const ProfileEntry& a, const ProfileEntry& b) { return a.seconds > b.seconds; });
  return out;
}

void ProfileScope::begin(const char* name) {
  active_ = true;
  name_ = name;
  outer_children_ = t_children;
  t_children = 0;
  start_ = thread_cpu_seconds();
}

void ProfileScope::end() {
  const double elapsed = thread_cpu_seconds() - start_;
  Total& t = t_totals[name_];
  t.seconds += elapsed - t_children;
  ++t.calls;
  t_children = outer_children_ + elapsed;
}

}  // namespace coca::cpu
