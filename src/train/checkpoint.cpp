#include "coca/train/checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

namespace coca::train {

namespace fs = std::filesystem;

std::string checkpoint_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step_%06lld", static_cast<long long>(step));
  return buf;
}

std::string resolve_resume(const std::string& resume, const std::string& run_dir) {
  if (resume == "latest") {
    const fs::path latest = fs::path(run_dir) / "checkpoints" / "latest";
    COCA_CHECK(fs::is_regular_file(latest), "--resume latest: no checkpoint yet (", latest.string(), " is missing)");
    std::ifstream in(latest);
    std::string name;
    std::getline(in, name);
    const fs::path dir = fs::path(run_dir) / "checkpoints" / name;
    COCA_CHECK(!name.empty() && fs::is_directory(dir), "--resume latest: ", latest.string(), " names '", name,
               "', which does not exist");
    return dir.string();
  }
  COCA_CHECK(fs::is_regular_file(fs::path(resume) / "state.json"), "--resume ", resume,
             ": not a checkpoint directory (no state.json)");
  return resume;
}

NamedTensors optimizer_tensors(const AdamW& opt) {
  NamedTensors out;
  for (const auto& s : opt.slots()) {
    out.emplace_back(s.name + ".exp_avg", s.m);
    out.emplace_back(s.name + ".exp_avg_sq", s.v);
  }
  out.emplace_back("step", Tensor::full({}, static_cast<double>(opt.steps()), DType::f64));
  return out;
}

void restore_optimizer(AdamW& opt, const NamedTensors& tensors, const std::string& source) {
  std::map<std::string, Tensor> byname(tensors.begin(), tensors.end());
  std::vector<std::string> problems;
  for (auto& s : opt.slots()) {
    for (auto [suffix, dst] : {std::pair<const char*, Tensor*>{".exp_avg", &s.m}, {".exp_avg_sq", &s.v}}) {
      auto it = byname.find(s.name + suffix);
      if (it == byname.end()) problems.push_back(s.name + suffix + " missing");
      else if (it->second.shape() != dst->shape()) problems.push_back(s.name + suffix + " wrongly shaped");
      else dst->copy_(it->second);
    }
  }
  auto step = byname.find("step");
  if (step == byname.end()) problems.push_back("step missing");
  else opt.set_steps(static_cast<int64_t>(step->second.item()));
  if (!problems.empty()) {
    std::string msg = str_cat("optimizer state ", source, " does not match the model:");
    for (auto& p : problems) msg += " " + p + ";";
    throw Error(msg);
  }
}

void write_json_atomic(const std::string& path, const nlohmann::json& j) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    COCA_CHECK(out.good(), "cannot write ", tmp);
    out << j.dump(2) << "\n";
    out.flush();
    COCA_CHECK(out.good(), "write to ", tmp, " failed (disk full?)");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  COCA_CHECK(!ec, "cannot rename ", tmp, " to ", path, ": ", ec.message());
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  COCA_CHECK(in.good(), "cannot open ", path);
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(str_cat(path, ": invalid JSON: ", e.what()));
  }
}

void publish_checkpoint(const std::string& checkpoints_dir, const std::string& name, int keep) {
  const fs::path root(checkpoints_dir), tmp = root / (name + ".tmp"), final_dir = root / name;
  std::error_code ec;
  if (fs::exists(final_dir)) fs::remove_all(final_dir, ec);  // re-saving the same step
  fs::rename(tmp, final_dir, ec);
  COCA_CHECK(!ec, "cannot rename ", tmp.string(), " to ", final_dir.string(), ": ", ec.message());
  {
    const fs::path latest_tmp = root / "latest.tmp";
    std::ofstream out(latest_tmp, std::ios::trunc);
    out << name << "\n";
    out.flush();
    COCA_CHECK(out.good(), "cannot write ", latest_tmp.string());
  }
  fs::rename(root / "latest.tmp", root / "latest", ec);
  COCA_CHECK(!ec, "cannot update ", (root / "latest").string(), ": ", ec.message());
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(root)) {
    const std::string n = e.path().filename().string();
    if (e.is_directory() && n.rfind("step_", 0) == 0 && n.find(".tmp") == std::string::npos) names.push_back(n);
  }
  std::sort(names.begin(), names.end());
  for (size_t i = 0; i + keep < names.size(); ++i) fs::remove_all(root / names[i], ec);
}

}  // namespace coca::train
