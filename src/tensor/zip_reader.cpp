#include "zip_reader.h"

#include <zlib.h>

#include <algorithm>

#include "coca/tensor/error.h"

namespace coca {

namespace {

uint64_t le(const unsigned char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

ZipReader::ZipReader(const std::string& path) : path_(path), in_(path, std::ios::binary) {
  COCA_CHECK(in_.good(), "torch checkpoint ", path, ": cannot open file");
  in_.seekg(0, std::ios::end);
  size_ = static_cast<uint64_t>(in_.tellg());
  read_directory();
  set_budget(default_budget(), "32 x the file's size + 64 MiB");
}

uint64_t ZipReader::default_budget() const { return size_ * 32 + (uint64_t{64} << 20); }

void ZipReader::set_budget(uint64_t bytes, std::string why) {
  budget_ = bytes;
  budget_why_ = std::move(why);
}

std::vector<char> ZipReader::read(const ZipEntry& e) {
  COCA_CHECK(!(e.flags & 1), fail(), "entry ", e.name, " is encrypted");
  const uint64_t data = e.data_offset;  // checked against the file by read_directory()
  COCA_CHECK(e.usize <= budget_ && used_ <= budget_ - e.usize, fail(), "entry ", e.name, " (", e.usize,
             " bytes) would bring what this archive inflates to ", used_ + e.usize, " bytes, over its budget of ",
             budget_, " (", budget_why_, ")");
  used_ += e.usize;
  std::vector<char> out;
  if (e.method == 0) {
    COCA_CHECK(e.csize == e.usize, fail(), "stored entry ", e.name, " has compressed size ", e.csize,
               " != size ", e.usize);
    out.resize(e.usize);
    read_at(data, out.data(), out.size(), e.name.c_str());
  } else if (e.method == 8) {
    // Deflate cannot expand data by more than about 1032:1; a larger claim is corruption.
    COCA_CHECK(e.usize / 1032 <= e.csize + 1, fail(), "deflated entry ", e.name, " claims ", e.usize,
               " bytes from ", e.csize);
    std::vector<char> packed(e.csize);
    read_at(data, packed.data(), packed.size(), e.name.c_str());
    out.resize(e.usize);
    inflate_raw(packed, out, e.name);
  } else {
    throw Error(str_cat(fail(), "entry ", e.name, " uses zip compression method ", e.method,
                        "; only stored (0) and deflate (8) are supported"));
  }
  uLong crc = crc32(0L, Z_NULL, 0);
  for (size_t pos = 0; pos < out.size();) {
    const size_t n = std::min<size_t>(out.size() - pos, 1u << 30);
    crc = crc32(crc, reinterpret_cast<const Bytef*>(out.data() + pos), static_cast<uInt>(n));
    pos += n;
  }
  COCA_CHECK(static_cast<uint32_t>(crc) == e.crc, fail(), "entry ", e.name, " fails its CRC-32 check (corrupt)");
  return out;
}

std::string ZipReader::fail() const { return str_cat("torch checkpoint ", path_, ": "); }

void ZipReader::read_at(uint64_t offset, void* dst, size_t n, const char* what) {
  COCA_CHECK(offset <= size_ && n <= size_ - offset, fail(), what, ": ", n, " bytes at offset ", offset,
             " lie past the end of the ", size_, "-byte file (truncated?)");
  in_.clear();
  in_.seekg(static_cast<std::streamoff>(offset));
  in_.read(static_cast<char*>(dst), static_cast<std::streamsize>(n));
  COCA_CHECK(in_.good(), fail(), "read error at offset ", offset, " (", what, ")");
}

void ZipReader::inflate_raw(const std::vector<char>& packed, std::vector<char>& out, const std::string& name) {
  z_stream z{};
  COCA_CHECK(inflateInit2(&z, -MAX_WBITS) == Z_OK, fail(), "zlib inflateInit2 failed for ", name);
  size_t in_pos = 0, out_pos = 0;
  int rc = Z_OK;
  while (rc == Z_OK) {
    const size_t in_n = std::min<size_t>(packed.size() - in_pos, 1u << 30);
    const size_t out_n = std::min<size_t>(out.size() - out_pos, 1u << 30);
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(packed.data() + in_pos));
    z.avail_in = static_cast<uInt>(in_n);
    z.next_out = reinterpret_cast<Bytef*>(out.data() + out_pos);
    z.avail_out = static_cast<uInt>(out_n);
    rc = inflate(&z, Z_NO_FLUSH);
    in_pos += in_n - z.avail_in;
    out_pos += out_n - z.avail_out;
    if (rc == Z_BUF_ERROR && (in_pos < packed.size() && out_pos < out.size())) rc = Z_OK;  // chunk boundary
  }
  inflateEnd(&z);
  COCA_CHECK(rc == Z_STREAM_END && out_pos == out.size(), fail(), "deflated entry ", name,
             " does not inflate to its ", out.size(), " bytes (zlib code ", rc, ", got ", out_pos, ")");
}

void ZipReader::read_directory() {
  // End of central directory: 22 bytes plus a comment of at most 65535, at the end of the file.
  const uint64_t tail = std::min<uint64_t>(size_, 22 + 65535);
  std::vector<unsigned char> t(tail);
  read_at(size_ - tail, t.data(), tail, "end of central directory");
  int64_t at = -1;
  for (int64_t i = static_cast<int64_t>(tail) - 22; i >= 0; --i)
    if (le(&t[i], 4) == 0x06054b50 && i + 22 + static_cast<int64_t>(le(&t[i + 20], 2)) <= static_cast<int64_t>(tail)) {
      at = i;
      break;
    }
  COCA_CHECK(at >= 0, fail(), "no zip end-of-central-directory record (truncated, or not a zip archive)");
  const unsigned char* e = &t[at];
  const uint64_t eocd_pos = size_ - tail + at;
  uint64_t count = le(e + 10, 2), cd_size = le(e + 12, 4), cd_offset = le(e + 16, 4);
  COCA_CHECK(le(e + 4, 2) == 0 && le(e + 6, 2) == 0, fail(), "multi-disk zip archives are not supported");
  if (eocd_pos >= 20) {
    unsigned char loc[20];
    read_at(eocd_pos - 20, loc, 20, "zip64 locator");
    if (le(loc, 4) == 0x07064b50) {
      unsigned char z[56];
      const uint64_t z_pos = le(loc + 8, 8);
      read_at(z_pos, z, 56, "zip64 end of central directory");
      COCA_CHECK(le(z, 4) == 0x06064b50, fail(), "zip64 locator points at offset ", z_pos,
                 ", which holds no zip64 end-of-central-directory record");
      count = le(z + 32, 8);
      cd_size = le(z + 40, 8);
      cd_offset = le(z + 48, 8);
    }
  }
  COCA_CHECK(cd_offset <= eocd_pos && cd_size <= eocd_pos - cd_offset, fail(), "central directory (",
             cd_size, " bytes at offset ", cd_offset, ") lies outside the file (corrupt or truncated)");
  std::vector<unsigned char> cd(cd_size);
  read_at(cd_offset, cd.data(), cd.size(), "central directory");
  size_t p = 0;
  for (uint64_t i = 0; i < count; ++i) {
    COCA_CHECK(p + 46 <= cd.size() && le(&cd[p], 4) == 0x02014b50, fail(), "central directory entry ", i,
               " is corrupt");
    const unsigned char* h = &cd[p];
    const size_t nlen = le(h + 28, 2), xlen = le(h + 30, 2), clen = le(h + 32, 2);
    COCA_CHECK(p + 46 + nlen + xlen + clen <= cd.size(), fail(), "central directory entry ", i,
               " runs past the directory");
    ZipEntry z;
    z.flags = static_cast<uint16_t>(le(h + 8, 2));
    z.method = static_cast<uint16_t>(le(h + 10, 2));
    z.crc = static_cast<uint32_t>(le(h + 16, 4));
    z.csize = le(h + 20, 4);
    z.usize = le(h + 24, 4);
    z.local_offset = le(h + 42, 4);
    z.name.assign(reinterpret_cast<const char*>(h + 46), nlen);
    // Fields saturated at 0xffffffff continue, in order, in the zip64 extra field (id 1).
    const bool need_u = z.usize == 0xffffffffu, need_c = z.csize == 0xffffffffu,
               need_o = z.local_offset == 0xffffffffu;
    if (need_u || need_c || need_o) {
      bool found = false;
      for (size_t x = 0; x + 4 <= xlen;) {
        const unsigned char* f = h + 46 + nlen + x;
        const size_t id = le(f, 2), len = le(f + 2, 2);
        COCA_CHECK(x + 4 + len <= xlen, fail(), "entry ", z.name, " has a corrupt extra field");
        if (id == 1) {
          size_t q = 0;
          auto take = [&](uint64_t& v) {
            COCA_CHECK(q + 8 <= len, fail(), "entry ", z.name, " has a short zip64 extra field");
            v = le(f + 4 + q, 8);
            q += 8;
          };
          if (need_u) take(z.usize);
          if (need_c) take(z.csize);
          if (need_o) take(z.local_offset);
          found = true;
          break;
        }
        x += 4 + len;
      }
      COCA_CHECK(found, fail(), "entry ", z.name, " needs a zip64 extra field and has none");
    }
    COCA_CHECK(by_name_.emplace(z.name, entries_.size()).second, fail(), "entry ", z.name,
               " appears twice in the central directory (a crafted archive)");
    entries_.push_back(std::move(z));
    p += 46 + nlen + xlen + clen;
  }
  // Each entry's local header and data must lie in the file, before the central directory, and
  // apart from every other entry's: overlapping entries let a small file inflate many times.
  std::vector<std::pair<uint64_t, size_t>> by_offset;
  for (size_t i = 0; i < entries_.size(); ++i) {
    ZipEntry& z = entries_[i];
    unsigned char h[30];
    COCA_CHECK(z.local_offset <= cd_offset && 30 <= cd_offset - z.local_offset, fail(), "entry ", z.name,
               " has its local header at offset ", z.local_offset, ", not before the central directory at ",
               cd_offset, " (corrupt archive)");
    read_at(z.local_offset, h, 30, z.name.c_str());
    COCA_CHECK(le(h, 4) == 0x04034b50, fail(), "entry ", z.name, " has no local header at offset ",
               z.local_offset, " (corrupt archive)");
    z.data_offset = z.local_offset + 30 + le(h + 26, 2) + le(h + 28, 2);
    COCA_CHECK(z.data_offset <= cd_offset && z.csize <= cd_offset - z.data_offset, fail(), "entry ", z.name, " (",
               z.csize, " bytes at offset ", z.data_offset, ") runs into the central directory at offset ", cd_offset, " (truncated or corrupt)");
    by_offset.emplace_back(z.local_offset, i);
  }
  std::sort(by_offset.begin(), by_offset.end());
  for (size_t k = 1; k < by_offset.size(); ++k) {
    const ZipEntry &a = entries_[by_offset[k - 1].second], &b = entries_[by_offset[k].second];
    COCA_CHECK(b.local_offset >= a.data_offset + a.csize, fail(), "entries ", a.name, " and ", b.name,
               " overlap (bytes ", b.local_offset, "-", a.data_offset + a.csize,
               "): refused, as a crafted archive that inflates the same data many times");
  }
}

}  // namespace coca
