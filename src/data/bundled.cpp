#include "coca/data/bundled.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "coca/data/sha256.h"
#include "coca/tensor/error.h"

namespace fs = std::filesystem;

namespace coca {

std::string resolve_bundled_file(const std::string& kind, const std::string& name_or_path, const std::string& flag) {
  std::error_code ec;
  if (fs::is_regular_file(name_or_path, ec)) return name_or_path;
  COCA_CHECK(name_or_path.find('/') == std::string::npos, flag, " ", name_or_path, ": no such file");
  std::vector<fs::path> roots;
  if (const char* env = std::getenv("COCA_DATA_DIR"); env && *env) roots.push_back(env);
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) roots.push_back(exe.parent_path().parent_path() / "share" / "coca");
  roots.push_back(fs::path(COCA_SOURCE_DIR) / "data_tools");
  std::string tried;
  for (const fs::path& root : roots) {
    const fs::path p = root / kind / (name_or_path + ".txt");
    if (fs::is_regular_file(p, ec)) return p.string();
    tried += (tried.empty() ? "" : ", ") + p.string();
  }
  throw Error(str_cat(flag, " ", name_or_path, ": neither a file nor a bundled ", kind, " list (looked for ", tried,
                      ")"));
}

namespace {

// Where python3 would import open_clip from ("" when it would not, or there is no python3).
std::string open_clip_package_dir() {
  FILE* p = ::popen("python3 -c \"import importlib.util as u; s = u.find_spec('open_clip'); "
                    "print(s.submodule_search_locations[0] if s and s.submodule_search_locations else '')\" "
                    "2>/dev/null",
                    "r");
  if (!p) return "";
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  ::pclose(p);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

}  // namespace

std::string find_clip_tokenizer(std::string& found) {
  std::error_code ec;
  std::vector<std::pair<fs::path, std::string>> places;  // file, how it was found
  if (const char* env = std::getenv("COCA_DATA_DIR"); env && *env)
    places.emplace_back(fs::path(env) / kClipTokenizerFile, "$COCA_DATA_DIR");
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) places.emplace_back(exe.parent_path().parent_path() / "share" / "coca" / kClipTokenizerFile, "the install prefix");
  places.emplace_back(fs::path(COCA_SOURCE_DIR) / "data_tools" / kClipTokenizerFile, "the source tree");
  const std::string pkg = open_clip_package_dir();
  places.emplace_back(pkg.empty() ? fs::path("<no open_clip package for python3>") : fs::path(pkg) / kClipTokenizerFile,
                      "the open_clip Python package");
  std::string tried;
  for (const auto& [file, how] : places) {
    if (fs::is_regular_file(file, ec)) {
      found = str_cat("the CLIP tokenizer from ", how, ": ", file.string(), " (sha256 ", sha256_file(file.string()), ")");
      return file.string();
    }
    tried += str_cat(tried.empty() ? "" : ", ", file.string());
  }
  found = tried;
  return "";
}

}  // namespace coca
