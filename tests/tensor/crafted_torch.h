#pragma once
// Writes PyTorch checkpoints byte by byte, as torch.save lays them out, for tests that need
// crafted ones (torch is not needed): a zip of stored or deflated entries, whose directory
// records may point at another entry's bytes, around a hand-assembled protocol-2 pickle.
#include <gtest/gtest.h>
#include <zlib.h>

#include <climits>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "coca/tensor/tensor.h"

namespace coca::crafted {

inline void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// ---- zip ------------------------------------------------------------------------------------

struct ZipItem {
  std::string name;
  std::string data;        // the entry's contents (inflated)
  bool deflate = false;
  int share_data_of = -1;  // >= 0: no bytes of its own; its directory record points at that entry's
};

inline std::string deflate_raw(const std::string& in) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, 9, Z_DEFLATED, -MAX_WBITS, 9, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&z, in.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

inline std::string zip_archive(const std::vector<ZipItem>& items) {
  std::string file, dir;
  std::vector<uint64_t> offsets;
  for (const ZipItem& it : items) {
    const ZipItem& src = it.share_data_of >= 0 ? items[it.share_data_of] : it;
    const std::string packed = src.deflate ? deflate_raw(src.data) : src.data;
    const uint32_t crc = static_cast<uint32_t>(
        crc32(0, reinterpret_cast<const Bytef*>(src.data.data()), static_cast<uInt>(src.data.size())));
    uint64_t local = file.size();
    if (it.share_data_of >= 0) {
      local = offsets[it.share_data_of];
    } else {
      put_le(file, 0x04034b50, 4);
      put_le(file, 20, 2), put_le(file, 0, 2), put_le(file, src.deflate ? 8 : 0, 2);
      put_le(file, 0, 2), put_le(file, 0x21, 2), put_le(file, crc, 4);
      put_le(file, packed.size(), 4), put_le(file, src.data.size(), 4);
      put_le(file, it.name.size(), 2), put_le(file, 0, 2);
      file += it.name + packed;
    }
    offsets.push_back(local);
    put_le(dir, 0x02014b50, 4);
    put_le(dir, 20, 2), put_le(dir, 20, 2), put_le(dir, 0, 2), put_le(dir, src.deflate ? 8 : 0, 2);
    put_le(dir, 0, 2), put_le(dir, 0x21, 2), put_le(dir, crc, 4);
    put_le(dir, packed.size(), 4), put_le(dir, src.data.size(), 4);
    put_le(dir, it.name.size(), 2), put_le(dir, 0, 2), put_le(dir, 0, 2);
    put_le(dir, 0, 2), put_le(dir, 0, 2), put_le(dir, 0, 4), put_le(dir, local, 4);
    dir += it.name;
  }
  const uint64_t cd_offset = file.size();
  file += dir;
  put_le(file, 0x06054b50, 4);
  put_le(file, 0, 2), put_le(file, 0, 2), put_le(file, items.size(), 2), put_le(file, items.size(), 2);
  put_le(file, dir.size(), 4), put_le(file, cd_offset, 4), put_le(file, 0, 2);
  return file;
}

// ---- pickle ---------------------------------------------------------------------------------

inline std::string pk_str(const std::string& s) {
  std::string out = "X";
  put_le(out, s.size(), 4);
  return out + s;
}
inline std::string pk_int(int64_t v) {
  std::string out;
  if (v >= INT32_MIN && v <= INT32_MAX) {
    out = "J";
    put_le(out, static_cast<uint64_t>(v), 4);
  } else {
    out = "\x8a\x08";
    put_le(out, static_cast<uint64_t>(v), 8);
  }
  return out;
}
inline std::string pk_tuple(const std::vector<int64_t>& v) {
  std::string out = "(";
  for (int64_t x : v) out += pk_int(x);
  return out + "t";
}

struct TensorRecord {
  std::string name, key, type = "FloatStorage";
  int64_t numel = 0, offset = 0;
  Shape size, stride;
};

// A state dict as torch.save pickles it: {name: _rebuild_tensor_v2(storage, offset, size, stride, False, {})}.
inline std::string state_dict_pickle(const std::vector<TensorRecord>& tensors) {
  std::string p = "\x80\x02}(";
  for (const TensorRecord& t : tensors) {
    p += pk_str(t.name);
    p += "ctorch._utils\n_rebuild_tensor_v2\n(";
    p += "(" + pk_str("storage") + "ctorch\n" + t.type + "\n" + pk_str(t.key) + pk_str("cpu") + pk_int(t.numel) + "tQ";
    p += pk_int(t.offset) + pk_tuple(t.size) + pk_tuple(t.stride) + "\x89}tR";
  }
  return p + "u.";
}

inline std::string floats(int64_t n, float value = 0.5f) {
  std::string out(static_cast<size_t>(n) * 4, '\0');
  for (int64_t i = 0; i < n; ++i) std::memcpy(&out[static_cast<size_t>(i) * 4], &value, 4);
  return out;
}

}  // namespace coca::crafted
