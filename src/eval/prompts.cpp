#include "coca/eval/prompts.h"

#include <fstream>

#include "coca/tensor/error.h"

namespace coca::eval {

std::vector<std::string> read_templates(const std::string& path) {
  if (path.empty()) return {"a photo of a {}."};
  std::ifstream in(path);
  COCA_CHECK(in.good(), "templates file ", path, ": cannot open");
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    COCA_CHECK(line.find("{}") != std::string::npos, "templates file ", path, ": line '", line,
               "' has no '{}' for the class name");
    out.push_back(line);
  }
  COCA_CHECK(!out.empty(), "templates file ", path, " holds no templates");
  return out;
}

std::vector<std::string> read_classnames(const std::string& path) {
  std::ifstream in(path);
  COCA_CHECK(in.good(), "class names file ", path, ": cannot open");
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

std::vector<std::string> expand_templates(const std::vector<std::string>& classnames,
                                          const std::vector<std::string>& templates) {
  std::vector<std::string> prompts;
  prompts.reserve(classnames.size() * templates.size());
  for (const auto& name : classnames)
    for (const auto& t : templates) {
      const size_t at = t.find("{}");
      COCA_CHECK(at != std::string::npos, "template '", t, "' has no '{}' for the class name");
      prompts.push_back(t.substr(0, at) + name + t.substr(at + 2));
    }
  return prompts;
}

}  // namespace coca::eval
