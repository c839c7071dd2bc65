#include "coca/train/checkpoint.h"

#include <fcntl.h>
#include <linux/fs.h>  // RENAME_EXCHANGE
#include <unistd.h>

#include <csignal>
#include <cstdlib>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "coca/model/weights.h"

namespace coca::train {

namespace fs = std::filesystem;

namespace {

[[noreturn]] void throw_errno(const std::string& what, const std::string& path, int err) {
  throw Error(str_cat(what, " ", path, ": ", std::strerror(err)));
}

int open_retrying(const std::string& path, int flags, mode_t mode = 0) {
  int fd;
  do fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  while (fd < 0 && errno == EINTR);
  return fd;
}

void close_checked(int fd, const std::string& path) {
  // close() can be where a deferred write error (NFS, quota) is reported.
  if (::close(fd) != 0) throw_errno("checkpoint: close failed for", path, errno);
}

void fsync_checked(int fd, const std::string& path) {
  if (::fsync(fd) == 0) return;
  const int err = errno;
  ::close(fd);
  throw_errno("checkpoint: fsync failed for", path, err);
}

// Durability of a rename or unlink needs an fsync of the directory holding the name.
void fsync_path(const std::string& path, bool directory) {
  const int fd = open_retrying(path, O_RDONLY | (directory ? O_DIRECTORY : 0));
  if (fd < 0) throw_errno("checkpoint: cannot open", path, errno);
  fsync_checked(fd, path);
  close_checked(fd, path);
}

void rename_checked(const fs::path& from, const fs::path& to) {
  if (::rename(from.c_str(), to.c_str()) != 0)
    throw Error(str_cat("checkpoint: cannot rename ", from.string(), " to ", to.string(), ": ", std::strerror(errno)));
}

// Swaps two names in one step (renameat2 RENAME_EXCHANGE). False where the filesystem cannot
// (EINVAL: NFS, some FUSE and overlay setups; ENOSYS: an old kernel) or COCA_TEST_NO_RENAME_EXCHANGE=1
// asks the tests to take the other path; any other failure throws.
bool exchange_names(const fs::path& a, const fs::path& b) {
  const char* no = std::getenv("COCA_TEST_NO_RENAME_EXCHANGE");
  if (no && std::string(no) == "1") return false;
  if (::renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE) == 0) return true;
  if (errno == EINVAL || errno == ENOSYS || errno == ENOTSUP) return false;
  throw Error(str_cat("checkpoint: cannot exchange ", a.string(), " and ", b.string(), ": ", std::strerror(errno)));
}

// Test hook: COCA_TEST_KILL_AT=<point> kills the process there with SIGKILL, as a crash would.
void kill_point(const char* point) {
  const char* at = std::getenv("COCA_TEST_KILL_AT");
  if (!at || std::string(at) != point) return;
  std::fprintf(stderr, "COCA_TEST_KILL_AT=%s: killing this process\n", point);
  std::fflush(nullptr);
  std::raise(SIGKILL);
}

void remove_all_checked(const fs::path& p) {
  std::error_code ec;
  fs::remove_all(p, ec);
  if (ec) throw Error(str_cat("checkpoint: cannot remove ", p.string(), ": ", ec.message()));
}

}  // namespace

void write_file_durable(const fs::path& path, const std::string& content) {
  const fs::path tmp = path.string() + ".tmp";
  const int fd = open_retrying(tmp.string(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw_errno("cannot write", tmp.string(), errno);
  for (size_t done = 0; done < content.size();) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      throw_errno("write failed for", tmp.string(), err);  // ENOSPC reads "No space left on device"
    }
    done += static_cast<size_t>(n);
  }
  fsync_checked(fd, tmp.string());
  close_checked(fd, tmp.string());
  rename_checked(tmp, path);
  const fs::path parent = path.has_parent_path() ? path.parent_path() : fs::path(".");
  fsync_path(parent.string(), true);
}

namespace {

// What a checkpoint directory lacks of checkpoint_files(), comma-separated ("" when complete).
std::string missing_files(const fs::path& dir) {
  std::string missing;
  for (const std::string& f : checkpoint_files())
    if (!fs::is_regular_file(dir / f)) missing += (missing.empty() ? "" : ", ") + f;
  return missing;
}

}  // namespace

std::string checkpoint_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step_%06lld", static_cast<long long>(step));
  return buf;
}

int64_t checkpoint_step(const std::string& name) {
  const std::string prefix = "step_";
  if (name.size() <= prefix.size() || !name.starts_with(prefix)) return -1;
  const char *first = name.data() + prefix.size(), *last = name.data() + name.size();
  if (!std::all_of(first, last, [](char c) { return c >= '0' && c <= '9'; })) return -1;
  int64_t step = -1;
  const auto [end, ec] = std::from_chars(first, last, step);
  return ec == std::errc() && end == last ? step : -1;
}

const std::vector<std::string>& checkpoint_files() {
  static const std::vector<std::string> files = {"state.json", "model.safetensors", "optimizer.safetensors"};
  return files;
}

std::string resolve_resume(const std::string& resume, const std::string& run_dir) {
  if (resume == "latest") {
    const fs::path root = fs::path(run_dir) / "checkpoints", latest = root / "latest";
    COCA_CHECK(fs::is_regular_file(latest), "--resume latest: no checkpoint yet (", latest.string(), " is missing)");
    std::ifstream in(latest);
    COCA_CHECK(in.good(), "--resume latest: cannot read ", latest.string());
    std::string name;
    std::getline(in, name);
    COCA_CHECK(checkpoint_step(name) >= 0, "--resume latest: ", latest.string(), " names '", name,
               "', which is not a checkpoint directory name (step_<number>)");
    const fs::path dir = root / name;
    COCA_CHECK(fs::is_directory(dir), "--resume latest: ", latest.string(), " names '", name,
               "', which does not exist");
    const std::string missing = missing_files(dir);
    COCA_CHECK(missing.empty(), "--resume latest: ", latest.string(), " names '", name,
               "', which is incomplete (no ", missing, "); resume from another checkpoint with --resume DIR");
    return dir.string();
  }
  // "run/checkpoints/step_000010/" has an empty filename(); its name is the last component.
  fs::path dir = fs::path(resume).lexically_normal();
  if (!dir.has_filename() && dir.has_parent_path()) dir = dir.parent_path();
  const std::string name = dir.filename().string();
  COCA_CHECK(!name.ends_with(".tmp") && !name.ends_with(".deleting"), "--resume ", resume, ": an ",
             name.ends_with(".tmp") ? "unfinished save" : "interrupted deletion",
             ", not a published checkpoint (use a step_<number> directory)");
  COCA_CHECK(fs::is_directory(dir), "--resume ", resume, ": no such checkpoint directory");
  const std::string missing = missing_files(dir);
  COCA_CHECK(missing.empty(), "--resume ", resume, ": not a complete checkpoint directory (no ", missing, ")");
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
  std::vector<std::string> missing, wrong;
  for (auto& s : opt.slots()) {
    for (auto [suffix, dst] : {std::pair<const char*, Tensor*>{".exp_avg", &s.m}, {".exp_avg_sq", &s.v}}) {
      auto it = byname.find(s.name + suffix);
      if (it == byname.end()) missing.push_back(s.name + suffix);
      else if (it->second.shape() != dst->shape())
        wrong.push_back(str_cat(s.name, suffix, " (file ", shape_str(it->second.shape()), ", model ",
                                shape_str(dst->shape()), ")"));
      else dst->copy_(it->second);
    }
  }
  auto step = byname.find("step");
  if (step == byname.end()) missing.push_back("step");
  else opt.set_steps(static_cast<int64_t>(step->second.item()));
  if (!missing.empty() || !wrong.empty())
    throw Error(
        str_cat("optimizer state ", source, " does not match the model: ", describe_mismatch(missing, {}, wrong)));
}

void write_json_atomic(const std::string& path, const nlohmann::json& j) { write_file_durable(path, j.dump(2) + "\n"); }

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  COCA_CHECK(in.good(), "cannot open ", path);
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for a number like 1e999
    throw Error(str_cat(path, ": invalid JSON: ", e.what()));
  }
}

void sync_directory_tree(const std::string& dir) {
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::file_status st = it->symlink_status(ec);
    if (ec) break;
    if (fs::is_regular_file(st)) fsync_path(it->path().string(), false);
    else if (fs::is_directory(st)) fsync_path(it->path().string(), true);
  }
  if (ec) throw Error(str_cat("checkpoint: cannot list ", dir, ": ", ec.message()));
  fsync_path(dir, true);
}

void publish_checkpoint(const std::string& checkpoints_dir, const std::string& name, int64_t step, int keep) {
  COCA_CHECK(checkpoint_step(name) == step, "publish_checkpoint: '", name, "' is not the name of step ", step);
  COCA_CHECK(keep > 0, "publish_checkpoint: keep must be positive, got ", keep);
  const fs::path root(checkpoints_dir), tmp = root / (name + ".tmp"), final_dir = root / name;
  COCA_CHECK(fs::is_directory(tmp), "publish_checkpoint: ", tmp.string(), " does not exist");
  // Every byte on disk before any name says "complete".
  sync_directory_tree(tmp.string());

  // Re-saving a step (a rolled-back timeline's, or the one resumed from): the name must hold a
  // complete copy at every moment, since `latest` may name it. The new copy and the old swap
  // names in one step; the old one then goes aside under a name no one reads and is deleted.
  // Where the filesystem cannot swap, the old copy is set aside first; a crash between the two
  // renames leaves step_X missing, and clean_checkpoint_dir() puts step_X.deleting back.
  const fs::path replaced = root / (name + ".deleting");
  const bool replacing = fs::exists(final_dir);
  if (replacing) {
    if (fs::exists(replaced)) remove_all_checked(replaced);
    if (exchange_names(tmp, final_dir)) {
      fsync_path(root.string(), true);
      kill_point("checkpoint-replace");
      rename_checked(tmp, replaced);
    } else {
      rename_checked(final_dir, replaced);
      fsync_path(root.string(), true);
      kill_point("checkpoint-replace");
      rename_checked(tmp, final_dir);
    }
  } else {
    rename_checked(tmp, final_dir);
  }
  fsync_path(root.string(), true);
  write_file_durable(root / "latest", name + "\n");
  if (replacing) remove_all_checked(replaced);

  // Prune this run's history only: checkpoints with a larger step belong to a timeline that a
  // --resume rolled back; they would otherwise outrank (and delete) every new save.
  std::vector<std::pair<int64_t, std::string>> older;
  for (const auto& e : fs::directory_iterator(root)) {
    const std::string n = e.path().filename().string();
    const int64_t s = checkpoint_step(n);
    if (s >= 0 && s <= step && n != name && e.is_directory()) older.emplace_back(s, n);
  }
  std::sort(older.begin(), older.end(), std::greater<>());  // newest first
  std::vector<fs::path> doomed;
  for (size_t i = static_cast<size_t>(keep - 1); i < older.size(); ++i) {
    const fs::path from = root / older[i].second, to = root / (older[i].second + ".deleting");
    if (fs::exists(to)) remove_all_checked(to);
    rename_checked(from, to);  // atomic: a crash mid-removal leaves only a .deleting name
    doomed.push_back(to);
  }
  if (doomed.empty()) return;
  fsync_path(root.string(), true);  // the renames are durable before any file inside goes
  for (const fs::path& p : doomed) remove_all_checked(p);
}

void discard_checkpoint_tmp(const std::string& checkpoints_dir, const std::string& name) noexcept {
  const fs::path tmp = fs::path(checkpoints_dir) / (name + ".tmp");
  std::error_code ec;
  fs::remove_all(tmp, ec);
  if (ec) std::fprintf(stderr, "warning: could not remove the failed save %s: %s\n", tmp.c_str(), ec.message().c_str());
}

void clean_checkpoint_dir(const std::string& checkpoints_dir) {
  const fs::path root(checkpoints_dir);
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return;
  // A crash while re-saving the step that `latest` names can leave that name missing, with the
  // old copy set aside (step_X.deleting) and the new one complete (step_X.tmp): put a complete
  // copy back under the name before any leftover is removed, the old one first (it is the one
  // `latest` was written for).
  std::string named;
  if (std::ifstream in(root / "latest"); in.good()) std::getline(in, named);
  if (checkpoint_step(named) >= 0 && !fs::exists(root / named)) {
    for (const char* suffix : {".deleting", ".tmp"}) {
      const fs::path copy = root / (named + suffix);
      if (!fs::is_directory(copy) || !missing_files(copy).empty()) continue;
      rename_checked(copy, root / named);
      fsync_path(root.string(), true);
      std::printf("restored %s from %s (left by an interrupted re-save)\n", (root / named).c_str(), copy.c_str());
      break;
    }
  }
  std::vector<std::pair<fs::path, const char*>> leftovers;  // path, what left it
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string n = it->path().filename().string();
    if (n == "latest.tmp" || (n.ends_with(".tmp") && checkpoint_step(n.substr(0, n.size() - 4)) >= 0))
      leftovers.emplace_back(it->path(), "an interrupted save");
    else if (n.ends_with(".deleting") && checkpoint_step(n.substr(0, n.size() - 9)) >= 0)
      leftovers.emplace_back(it->path(), "an interrupted deletion");
  }
  if (ec) throw Error(str_cat("checkpoint: cannot list ", root.string(), ": ", ec.message()));
  std::sort(leftovers.begin(), leftovers.end());
  for (const auto& [p, why] : leftovers) {
    remove_all_checked(p);
    std::printf("removed %s (left by %s)\n", p.c_str(), why);
  }
  std::fflush(stdout);
}

}  // namespace coca::train
