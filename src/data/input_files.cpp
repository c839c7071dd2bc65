#include "coca/data/input_files.h"

#include <sys/wait.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "coca/tensor/error.h"

namespace coca {

namespace {

bool all_digits(const std::string& s) {
  if (s.empty()) return false;
  size_t i = s[0] == '-' ? 1 : 0;
  if (i == s.size()) return false;
  for (; i < s.size(); ++i)
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}

// The alternatives one brace group stands for: "a,b,c" or "N..M".
std::vector<std::string> group_alternatives(const std::string& body, const std::string& pattern) {
  const size_t dots = body.find("..");
  if (dots != std::string::npos && body.find(',') == std::string::npos) {
    const std::string a = body.substr(0, dots), b = body.substr(dots + 2);
    COCA_CHECK(all_digits(a) && all_digits(b), "input pattern ", pattern, ": {", body,
               "} is not a numeric range (write {00000..00099})");
    COCA_CHECK(a.size() <= 18 && b.size() <= 18, "input pattern ", pattern, ": {", body, "}: numbers too long");
    const int64_t lo = std::stoll(a), hi = std::stoll(b);
    COCA_CHECK(hi >= lo, "input pattern ", pattern, ": {", body, "} counts down");
    COCA_CHECK(hi - lo < 100'000'000, "input pattern ", pattern, ": {", body, "} stands for more than 1e8 names");
    // Zero padding as written: the width of a bound that starts with 0 (as braceexpand).
    size_t width = 0;
    if (a.size() > 1 && a[0] == '0') width = a.size();
    if (b.size() > 1 && b[0] == '0') width = std::max(width, b.size());
    std::vector<std::string> out;
    out.reserve(static_cast<size_t>(hi - lo + 1));
    char buf[32];
    for (int64_t v = lo; v <= hi; ++v) {
      std::snprintf(buf, sizeof(buf), "%0*lld", static_cast<int>(width), static_cast<long long>(v));
      out.emplace_back(buf);
    }
    return out;
  }
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    const size_t comma = body.find(',', start);
    out.push_back(body.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace

std::vector<std::string> expand_braces(const std::string& pattern) {
  if (is_pipe_input(pattern) && pattern.find('{') == std::string::npos) return {pattern};
  const size_t open = pattern.find('{');
  const size_t stray_close = pattern.find('}');
  if (open == std::string::npos) {
    COCA_CHECK(stray_close == std::string::npos, "input pattern ", pattern, ": '}' without '{'");
    return {pattern};
  }
  const size_t close = pattern.find('}', open);
  COCA_CHECK(close != std::string::npos, "input pattern ", pattern, ": '{' without '}'");
  COCA_CHECK(stray_close >= open, "input pattern ", pattern, ": '}' without '{'");
  const std::string body = pattern.substr(open + 1, close - open - 1);
  COCA_CHECK(body.find('{') == std::string::npos, "input pattern ", pattern, ": nested braces are not supported");
  const std::string head = pattern.substr(0, open);
  const std::vector<std::string> tails = expand_braces(pattern.substr(close + 1));
  std::vector<std::string> out;
  for (const std::string& alt : group_alternatives(body, pattern))
    for (const std::string& tail : tails) out.push_back(head + alt + tail);
  return out;
}

bool is_pipe_input(const std::string& name) { return name.rfind("pipe:", 0) == 0; }

std::string input_base_name(const std::string& name) {
  std::string path = name;
  if (is_pipe_input(name)) {
    // The command's last word that names a .tar ("aws s3 cp s3://b/00042.tar -"), else its last word.
    std::vector<std::string> words;
    size_t i = 5;
    while (i < name.size()) {
      const size_t start = name.find_first_not_of(" \t", i);
      if (start == std::string::npos) break;
      const size_t end = name.find_first_of(" \t", start);
      words.push_back(name.substr(start, end == std::string::npos ? std::string::npos : end - start));
      i = end == std::string::npos ? name.size() : end;
    }
    path = words.empty() ? name : words.back();
    for (auto w = words.rbegin(); w != words.rend(); ++w)
      if (w->find(".tar") != std::string::npos) {
        path = *w;
        break;
      }
  }
  const std::string base = std::filesystem::path(path).filename().string();
  return base.empty() ? path : base;
}

ByteSource::ByteSource(const std::string& name) : name_(name) {
  if (is_pipe_input(name)) {
    const std::string command = name.substr(5);
    COCA_CHECK(!command.empty(), "input '", name, "': no command after pipe:");
    std::fflush(nullptr);  // the child inherits stdio buffers
    file_ = popen(command.c_str(), "r");
    COCA_CHECK(file_ != nullptr, "input '", name, "': cannot start the command: ", std::strerror(errno));
    pipe_ = true;
  } else {
    std::error_code ec;
    COCA_CHECK(!std::filesystem::is_directory(name, ec), "input ", name, " is a directory, not a tar");
    file_ = std::fopen(name.c_str(), "rb");
    COCA_CHECK(file_ != nullptr, "cannot open input ", name, ": ", std::strerror(errno));
  }
}

ByteSource::~ByteSource() {
  if (!file_) return;
  if (pipe_) pclose(file_);
  else std::fclose(file_);
}

size_t ByteSource::read(void* dst, size_t n) {
  size_t got = 0;
  while (got < n) {
    const size_t r = std::fread(static_cast<char*>(dst) + got, 1, n - got, file_);
    got += r;
    if (r == 0) {
      COCA_CHECK(!std::ferror(file_), "reading input ", name_, " failed at byte ", position_ + got, ": ",
                 std::strerror(errno));
      break;
    }
  }
  position_ += static_cast<int64_t>(got);
  return got;
}

int64_t ByteSource::skip(int64_t n) {
  char buf[65536];
  int64_t done = 0;
  while (done < n) {
    const size_t want = static_cast<size_t>(std::min<int64_t>(n - done, sizeof(buf)));
    const size_t got = read(buf, want);
    done += static_cast<int64_t>(got);
    if (got < want) break;
  }
  return done;
}

void ByteSource::finish() {
  if (!file_) return;
  FILE* f = file_;
  file_ = nullptr;
  if (!pipe_) {
    std::fclose(f);
    return;
  }
  // Drain what the command still writes (a reader that stopped at a damaged member), so that
  // it ends normally rather than on SIGPIPE.
  char buf[65536];
  while (std::fread(buf, 1, sizeof(buf), f) > 0) {
  }
  const int status = pclose(f);
  COCA_CHECK(status != -1, "input '", name_, "': waiting for the command failed: ", std::strerror(errno));
  COCA_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "input '", name_, "': the command ",
             WIFEXITED(status) ? str_cat("exited with status ", WEXITSTATUS(status))
                               : str_cat("was killed by signal ", WTERMSIG(status)));
}

}  // namespace coca
