#pragma once
// Where a CPU step's time goes, kernel by kernel. Off by default. While on (on the thread that
// turned it on), every instrumented entry point adds its exclusive thread CPU time
// (clock_gettime(CLOCK_THREAD_CPUTIME_ID), time spent in nested instrumented calls subtracted)
// and a call count to a total per name. Only that thread is measured, so the figures describe a
// one-thread run (OMP_NUM_THREADS=1); with more threads the work other threads do is missing and
// the time the measured thread waits at a barrier is counted. GEMM entries are named "gemm ..."
// so that a report can split GEMM from the rest. Each scope costs two clock reads (~0.1-0.5 us)
// while on and one thread-local load while off.
#include <cstdint>
#include <string>
#include <vector>

namespace coca::cpu {

namespace detail {
extern thread_local bool t_profiling;
}

// Turns the per-kernel timing on or off for the calling thread; turning it on clears the totals.
void set_cpu_profiling(bool on);
// The current thread's CPU time in seconds (CLOCK_THREAD_CPUTIME_ID).
double thread_cpu_seconds();

struct ProfileEntry {
  std::string name;
  double seconds = 0;  // exclusive thread CPU time
  int64_t calls = 0;
};
// Totals since profiling was turned on, largest first.
std::vector<ProfileEntry> cpu_profile();

// Times the enclosing block under `name` (a string literal: the pointer is kept).
class ProfileScope {
 public:
  explicit ProfileScope(const char* name) {
    if (detail::t_profiling) begin(name);
  }
  ~ProfileScope() {
    if (active_) end();
  }
  ProfileScope(const ProfileScope&) = delete;
  ProfileScope& operator=(const ProfileScope&) = delete;

 private:
  void begin(const char* name);
  void end();
  bool active_ = false;
  const char* name_ = nullptr;
  double start_ = 0, outer_children_ = 0;
};

}  // namespace coca::cpu
