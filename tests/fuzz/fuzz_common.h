#pragma once
// What the harnesses share: the input as a file (most parsers take a path), splitting one input
// into several files, and the rule for errors. A coca::Error is the documented answer to bad
// input and ends the run quietly; anything else escapes LLVMFuzzerTestOneInput, and libFuzzer
// reports it (std::terminate) together with crashes, sanitizer reports, leaks and timeouts.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "coca/tensor/error.h"

namespace coca::fuzz {

// An in-memory file (memfd) that a parser opens by path, /proc/self/fd/<fd>: no disk traffic,
// nothing left behind, one per harness process.
class MemFile {
 public:
  explicit MemFile(const char* name) : fd_(memfd_create(name, 0)) {
    if (fd_ < 0) {
      std::perror("memfd_create");
      std::abort();
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  const std::string& write(const void* data, size_t size) {
    if (ftruncate(fd_, 0) != 0 || pwrite(fd_, data, size, 0) != static_cast<ssize_t>(size)) {
      std::perror("memfd write");
      std::abort();
    }
    return path_;
  }
  const std::string& write(std::string_view s) { return write(s.data(), s.size()); }
  const std::string& path() const { return path_; }

 private:
  int fd_;
  std::string path_;
};

// A directory of this process's own under /tmp, for parsers that want real names (a folder
// tree, a file renamed into place), removed at exit.
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    std::filesystem::path d = std::filesystem::temp_directory_path() / ("coca-fuzz-" + std::to_string(getpid()));
    std::filesystem::remove_all(d);
    std::filesystem::create_directories(d);
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(scratch_dir(), ec);
    });
    return d;
  }();
  return dir;
}

// Splits an input into up to `n` parts at NUL bytes (the last part keeps any further NULs), so
// that one input can hold several files; the dictionaries and seeds use the same layout.
inline std::vector<std::string_view> split_parts(const uint8_t* data, size_t size, size_t n) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> parts;
  while (parts.size() + 1 < n) {
    const size_t nul = rest.find('\0');
    if (nul == std::string_view::npos) break;
    parts.push_back(rest.substr(0, nul));
    rest.remove_prefix(nul + 1);
  }
  parts.push_back(rest);
  while (parts.size() < n) parts.emplace_back();
  return parts;
}

// Runs `f`; a coca::Error (the documented error, or a subclass such as ImageDecodeError) is the
// expected outcome for bad input. Returns whether `f` completed. COCA_FUZZ_VERBOSE=1 prints each
// error's message (to see why a seed or a crash file is refused).
template <typename F>
bool expect_errors(F&& f) {
  static const bool verbose = std::getenv("COCA_FUZZ_VERBOSE") != nullptr;
  try {
    f();
    return true;
  } catch (const coca::Error& e) {
    if (verbose) std::fprintf(stderr, "fuzz: expected error: %s\n", e.what());
    return false;
  }
}

// A property the parser promises; failing it is a finding like a crash.
#define FUZZ_ASSERT(cond)                                                                    \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      std::fprintf(stderr, "fuzz: %s:%d: property failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                          \
    }                                                                                        \
  } while (0)

// Parsers that warn on std::cerr (unknown config keys) would flood the fuzzer's log.
inline void silence_cerr() { std::cerr.rdbuf(nullptr); }

}  // namespace coca::fuzz
