#include "coca/data/lzf.h"

#include <hdf5.h>

#include <cstdlib>
#include <cstring>
#include <vector>

namespace coca {
namespace {
constexpr size_t kMaxLiteral = 32;
constexpr size_t kMaxOffset = 8192;
constexpr size_t kMaxMatch = 264;  // 2 + 7 + 255
constexpr int kHashBits = 14;

inline uint32_t hash3(const uint8_t* p) {
  const uint32_t v = (uint32_t{p[0]} << 16) | (uint32_t{p[1]} << 8) | p[2];
  return (v * 2654435761u) >> (32 - kHashBits);
}
}  // namespace

size_t lzf_compress(const uint8_t* in, size_t n, uint8_t* out, size_t out_cap) {
  if (n == 0) return 0;
  std::vector<int64_t> table(size_t{1} << kHashBits, -1);
  size_t ip = 0, op = 0;
  size_t lit_start = 0;  // first byte of the pending literal run
  auto flush_literals = [&](size_t end) -> bool {
    while (lit_start < end) {
      const size_t run = std::min(kMaxLiteral, end - lit_start);
      if (op + 1 + run > out_cap) return false;
      out[op++] = static_cast<uint8_t>(run - 1);
      std::memcpy(out + op, in + lit_start, run);
      op += run;
      lit_start += run;
    }
    return true;
  };
  while (ip + 2 < n) {
    const uint32_t h = hash3(in + ip);
    const int64_t ref = table[h];
    table[h] = static_cast<int64_t>(ip);
    if (ref >= 0 && ip - static_cast<size_t>(ref) <= kMaxOffset &&
        std::memcmp(in + ref, in + ip, 3) == 0) {
      size_t len = 3;
      const size_t max_len = std::min(kMaxMatch, n - ip);
      while (len < max_len && in[ref + static_cast<int64_t>(len)] == in[ip + len]) ++len;
      if (!flush_literals(ip)) return 0;
      const size_t off = ip - static_cast<size_t>(ref) - 1;
      const size_t l = len - 2;
      if (l < 7) {
        if (op + 2 > out_cap) return 0;
        out[op++] = static_cast<uint8_t>((l << 5) | (off >> 8));
      } else {
        if (op + 3 > out_cap) return 0;
        out[op++] = static_cast<uint8_t>((7 << 5) | (off >> 8));
        out[op++] = static_cast<uint8_t>(l - 7);
      }
      out[op++] = static_cast<uint8_t>(off & 0xFF);
      for (size_t k = 1; k < len && ip + k + 2 < n; ++k) table[hash3(in + ip + k)] = static_cast<int64_t>(ip + k);
      ip += len;
      lit_start = ip;
    } else {
      ++ip;
    }
  }
  if (!flush_literals(n)) return 0;
  return op;
}

size_t lzf_decompress(const uint8_t* in, size_t n, uint8_t* out, size_t out_cap, bool* too_small) {
  if (too_small) *too_small = false;
  size_t ip = 0, op = 0;
  while (ip < n) {
    size_t ctrl = in[ip++];
    if (ctrl < 32) {
      const size_t run = ctrl + 1;
      if (ip + run > n) return 0;
      if (op + run > out_cap) { if (too_small) *too_small = true; return 0; }
      std::memcpy(out + op, in + ip, run);
      op += run;
      ip += run;
    } else {
      size_t len = ctrl >> 5;
      if (len == 7) {
        if (ip >= n) return 0;
        len += in[ip++];
      }
      if (ip >= n) return 0;
      const size_t back = ((ctrl & 0x1F) << 8) + in[ip++] + 1;
      len += 2;
      if (back > op) return 0;
      if (op + len > out_cap) { if (too_small) *too_small = true; return 0; }
      const uint8_t* ref = out + op - back;
      for (size_t k = 0; k < len; ++k) out[op + k] = ref[k];  // may overlap: byte by byte
      op += len;
    }
  }
  return op;
}

namespace {

// The filter callbacks follow h5py's lzf_filter.c: cd_values = {filter version, LZF version,
// uncompressed chunk bytes}; buffers are malloc'd as HDF5 expects.
herr_t lzf_set_local(hid_t dcpl, hid_t type, hid_t) {
  unsigned flags = 0;
  size_t nelements = 8;
  unsigned values[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  if (H5Pget_filter_by_id2(dcpl, kLzfFilterId, &flags, &nelements, values, 0, nullptr, nullptr) < 0) return -1;
  if (nelements < 3) nelements = 3;
  if (values[0] == 0) values[0] = 4;
  if (values[1] == 0) values[1] = 0x0105;
  hsize_t chunk[32];
  const int nd = H5Pget_chunk(dcpl, 32, chunk);
  if (nd < 0) return -1;
  size_t bytes = H5Tget_size(type);
  if (bytes == 0) return -1;
  for (int i = 0; i < nd; ++i) bytes *= chunk[i];
  values[2] = static_cast<unsigned>(bytes);
  return H5Pmodify_filter(dcpl, kLzfFilterId, flags, nelements, values);
}

size_t lzf_filter(unsigned flags, size_t cd_nelmts, const unsigned cd_values[], size_t nbytes, size_t* buf_size,
                  void** buf) {
  const auto* in = static_cast<const uint8_t*>(*buf);
  if (!(flags & H5Z_FLAG_REVERSE)) {
    const size_t cap = *buf_size;
    auto* out = static_cast<uint8_t*>(std::malloc(cap));
    if (!out) return 0;
    const size_t n = lzf_compress(in, nbytes, out, cap);
    if (n == 0) { std::free(out); return 0; }  // incompressible: HDF5 stores it raw (optional filter)
    std::free(*buf);
    *buf = out;
    *buf_size = cap;
    return n;
  }
  size_t cap = (cd_nelmts >= 3 && cd_values[2] != 0) ? cd_values[2] : *buf_size;
  for (int attempt = 0; attempt < 16; ++attempt) {
    auto* out = static_cast<uint8_t*>(std::malloc(cap));
    if (!out) return 0;
    bool too_small = false;
    const size_t n = lzf_decompress(in, nbytes, out, cap, &too_small);
    if (n > 0) {
      std::free(*buf);
      *buf = out;
      *buf_size = cap;
      return n;
    }
    std::free(out);
    if (!too_small) return 0;  // corrupt chunk
    cap += *buf_size;
  }
  return 0;
}

}  // namespace

void register_lzf_filter() {
  if (H5Zfilter_avail(kLzfFilterId) > 0) return;
  static const H5Z_class2_t cls = {
      H5Z_CLASS_T_VERS, static_cast<H5Z_filter_t>(kLzfFilterId), 1, 1, "lzf", nullptr, lzf_set_local, lzf_filter};
  H5Zregister(&cls);
}

}  // namespace coca
