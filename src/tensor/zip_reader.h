#pragma once
// Reading zip archives as torch.save writes them (tests/reference/make_torch_checkpoints.py
// writes the kinds we read): the central directory (zip64 records and extra fields when the
// archive or an entry passes 4 GiB), local headers, stored or deflated entries, CRC-32 checked.
// Encrypted entries, other compression methods and multi-disk archives are refused, and so are
// archives whose entries overlap or repeat a name (a zip bomb's tricks: torch.save never writes
// them). What read() may inflate in all is bounded by a budget (set_budget), checked before
// anything is allocated.
#include <cstdint>
#include <fstream>
#include <string>
#include <unordered_map>
#include <vector>

namespace coca {

struct ZipEntry {
  std::string name;
  uint16_t flags = 0, method = 0;
  uint32_t crc = 0;
  uint64_t csize = 0, usize = 0, local_offset = 0;
  uint64_t data_offset = 0;  // where its bytes start, after the local header
};

// Errors name the archive as "torch checkpoint <path>: ...".
class ZipReader {
 public:
  explicit ZipReader(const std::string& path);
  const std::vector<ZipEntry>& entries() const { return entries_; }
  const ZipEntry* find(const std::string& name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : &entries_[it->second];
  }
  // The entry's bytes, inflated if deflated, CRC-32 checked. Counts against the budget.
  std::vector<char> read(const ZipEntry& e);
  std::string fail() const;
  uint64_t file_size() const { return size_; }
  // The most read() may return in all, over every call (default_budget() until set): an entry
  // that would pass it is refused, naming both, before its bytes are read. `why` says in the
  // error where the figure comes from.
  void set_budget(uint64_t bytes, std::string why);
  uint64_t budget() const { return budget_; }
  // 32 times the file's size plus 64 MiB: stored entries, which cannot overlap, add up to at
  // most the file's size; deflate may expand data up to 1032:1, which only a crafted file needs.
  uint64_t default_budget() const;

 private:
  void read_at(uint64_t offset, void* dst, size_t n, const char* what);
  void inflate_raw(const std::vector<char>& packed, std::vector<char>& out, const std::string& name);
  void read_directory();
  std::string path_;
  std::ifstream in_;
  uint64_t size_ = 0;
  std::vector<ZipEntry> entries_;
  std::unordered_map<std::string, size_t> by_name_;
  uint64_t budget_ = 0, used_ = 0;
  std::string budget_why_;
};

}  // namespace coca
