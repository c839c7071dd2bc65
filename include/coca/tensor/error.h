#pragma once
// Errors are exceptions that carry their context (op, shapes, file); binaries catch them in
// main, print one line and exit non-zero.
#include <sstream>
#include <stdexcept>
#include <string>

namespace coca {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
inline void append(std::ostringstream&) {}
template <typename T, typename... Rest>
void append(std::ostringstream& os, const T& v, const Rest&... rest) {
  os << v;
  append(os, rest...);
}
}  // namespace detail

template <typename... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  detail::append(os, args...);
  return os.str();
}

}  // namespace coca

// COCA_CHECK(cond, parts...): throws coca::Error built from the parts when cond is false.
#define COCA_CHECK(cond, ...)                                   \
  do {                                                          \
    if (!(cond)) throw ::coca::Error(::coca::str_cat(__VA_ARGS__)); \
  } while (0)
