#include "coca/data/bundled.h"

#include <cstdlib>
#include <filesystem>
#include <vector>

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

}  // namespace coca
