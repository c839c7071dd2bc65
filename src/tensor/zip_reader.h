#pragma once
// Reading zip archives as torch.save writes them (tests/reference/make_torch_checkpoints.py
// writes the kinds we read): the central directory (zip64 records and extra fields when the
// archive or an entry passes 4 GiB), local headers, stored or deflated entries, CRC-32 checked.
// Encrypted entries, other compression methods and multi-disk archives are refused.
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
  // The entry's bytes, inflated if deflated, CRC-32 checked.
  std::vector<char> read(const ZipEntry& e);
  std::string fail() const;

 private:
  void read_at(uint64_t offset, void* dst, size_t n, const char* what);
  void inflate_raw(const std::vector<char>& packed, std::vector<char>& out, const std::string& name);
  void read_directory();
  std::string path_;
  std::ifstream in_;
  uint64_t size_ = 0;
  std::vector<ZipEntry> entries_;
  std::unordered_map<std::string, size_t> by_name_;
};

}  // namespace coca
