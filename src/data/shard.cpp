#include "coca/data/shard.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "coca/data/lzf.h"
#include "coca/data/shard_index.h"

namespace coca {

using h5::check;
using h5::check_id;
using h5::Handle;
using Lock = std::lock_guard<std::recursive_mutex>;

Compression parse_compression(const std::string& name) {
  if (name == "none") return Compression::none;
  if (name == "gzip") return Compression::gzip;
  if (name == "lzf") return Compression::lzf;
  throw Error(str_cat("unknown compression '", name, "' (none, gzip, lzf)"));
}

const char* compression_name(Compression c) {
  switch (c) {
    case Compression::none: return "none";
    case Compression::gzip: return "gzip";
    case Compression::lzf: return "lzf";
  }
  return "none";
}

ShardImageFormat parse_shard_image_format(const std::string& name) {
  if (name == "raw") return ShardImageFormat::raw;
  if (name == "jpeg") return ShardImageFormat::jpeg;
  throw Error(str_cat("unknown image format '", name, "' (jpeg, raw)"));
}

const char* shard_image_format_name(ShardImageFormat f) { return f == ShardImageFormat::jpeg ? "jpeg" : "raw"; }

int shard_format_version(ShardImageFormat f) {
  return f == ShardImageFormat::jpeg ? kShardFormatVersionEncoded : kShardFormatVersion;
}

namespace {

// An extendible dataset [0, dims...] chunked along the first axis. `filters`: compression
// (when `compress`) and checksum as the layout says; false for variable-length strings,
// which HDF5 cannot filter ("not suitable for filters").
Handle create_rows_dataset(hid_t file, const char* name, hid_t type, std::vector<hsize_t> row_dims,
                           hsize_t chunk_rows, const ShardLayout& layout, bool compress, bool filters,
                           const std::string& path) {
  std::vector<hsize_t> dims{0}, maxdims{H5S_UNLIMITED}, chunk{chunk_rows};
  for (hsize_t d : row_dims) {
    dims.push_back(d);
    maxdims.push_back(d);
    chunk.push_back(d);
  }
  const int rank = static_cast<int>(dims.size());
  Handle space(check_id(H5Screate_simple(rank, dims.data(), maxdims.data()), "H5Screate_simple", path),
               Handle::Kind::dataspace);
  Handle dcpl(check_id(H5Pcreate(H5P_DATASET_CREATE), "H5Pcreate", path), Handle::Kind::plist);
  check(H5Pset_chunk(dcpl, rank, chunk.data()), "H5Pset_chunk", path);
  if (filters && compress && layout.compression == Compression::gzip) {
    check(H5Pset_deflate(dcpl, static_cast<unsigned>(layout.gzip_level)), "H5Pset_deflate", path);
  } else if (filters && compress && layout.compression == Compression::lzf) {
    check(H5Pset_filter(dcpl, kLzfFilterId, H5Z_FLAG_OPTIONAL, 0, nullptr), "H5Pset_filter(lzf)", path);
  }
  // Added last: writing applies filters in the order added and reading undoes them in
  // reverse, so the checksum covers the bytes as stored and is verified before a
  // decompressor ever sees damaged input.
  if (filters && layout.checksum) check(H5Pset_fletcher32(dcpl), "H5Pset_fletcher32", path);
  return Handle(check_id(H5Dcreate2(file, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT),
                         (std::string("create dataset ") + name).c_str(), path),
                Handle::Kind::dataset);
}

// Appends `rows` rows held in `data` to an extendible dataset.
void append_rows(hid_t dset, hid_t mem_type, int64_t at, int64_t rows, const void* data, const std::string& path,
                 const char* name) {
  if (rows == 0) return;
  std::vector<hsize_t> dims = h5::dataset_dims(dset, path);
  dims[0] = static_cast<hsize_t>(at + rows);
  check(H5Dset_extent(dset, dims.data()), "H5Dset_extent", path);
  Handle fspace(check_id(H5Dget_space(dset), "H5Dget_space", path), Handle::Kind::dataspace);
  std::vector<hsize_t> start(dims.size(), 0), count = dims;
  start[0] = static_cast<hsize_t>(at);
  count[0] = static_cast<hsize_t>(rows);
  check(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr),
        "H5Sselect_hyperslab", path);
  Handle mspace(check_id(H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr), "H5Screate_simple",
                         path),
                Handle::Kind::dataspace);
  check(H5Dwrite(dset, mem_type, mspace, fspace, H5P_DEFAULT, data), (std::string("write ") + name).c_str(), path);
}

}  // namespace

ShardWriter::ShardWriter(std::string path, ShardLayout layout) : path_(std::move(path)), layout_(std::move(layout)) {
  COCA_CHECK(layout_.image_size > 0 && layout_.chunk_images > 0, "shard writer: bad layout (image_size ",
             layout_.image_size, ", chunk_images ", layout_.chunk_images, ")");
  COCA_CHECK(layout_.blob_chunk_bytes > 0 && layout_.blob_chunk_bytes <= (int64_t{1} << 30),
             "shard writer: blob chunk of ", layout_.blob_chunk_bytes, " bytes (1 byte to 1 GiB)");
  h5::init();
  Lock g(h5::lock());
  file_ = Handle(check_id(H5Fcreate(path_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "create file", path_),
                 Handle::Kind::file);
  const hsize_t s = static_cast<hsize_t>(layout_.image_size);
  if (layout_.image_format == ShardImageFormat::jpeg) {
    // Encoded bytes do not compress further: checksum only.
    images_ = create_rows_dataset(file_, "image_bytes", H5T_STD_U8LE, {},
                                  static_cast<hsize_t>(layout_.blob_chunk_bytes), layout_, false, true, path_);
    return;
  }
  images_ = create_rows_dataset(file_, "images", H5T_STD_U8LE, {s, s, 3},
                                static_cast<hsize_t>(layout_.chunk_images), layout_, true, true, path_);
  pending_.reserve(static_cast<size_t>(layout_.chunk_images) * s * s * 3);
}

ShardWriter::~ShardWriter() {
  if (!closed_) {
    Lock g(h5::lock());
    images_.reset();
    file_.reset();
  }
}

void ShardWriter::add(const uint8_t* rgb, const std::string& caption, const std::string& key, const int32_t* tokens,
                      int32_t label) {
  COCA_CHECK(!closed_, "shard writer: add after close (", path_, ")");
  COCA_CHECK(layout_.image_format == ShardImageFormat::raw, "shard writer: ", path_,
             " stores encoded images (add_encoded, not add)");
  const size_t bytes = static_cast<size_t>(layout_.image_size) * layout_.image_size * 3;
  pending_.insert(pending_.end(), rgb, rgb + bytes);
  add_text(caption, key, tokens, label);
  if (pending_.size() >= bytes * static_cast<size_t>(layout_.chunk_images)) flush_images();
}

void ShardWriter::add_encoded(const uint8_t* bytes, size_t size, int width, int height, const std::string& caption,
                              const std::string& key, const int32_t* tokens, int32_t label) {
  COCA_CHECK(!closed_, "shard writer: add after close (", path_, ")");
  COCA_CHECK(layout_.image_format == ShardImageFormat::jpeg, "shard writer: ", path_,
             " stores raw pixels (add, not add_encoded)");
  COCA_CHECK(size > 0 && width > 0 && height > 0, "shard writer: ", path_, ": empty image for ", key);
  pending_blob_.insert(pending_blob_.end(), bytes, bytes + size);
  offsets_.push_back(offsets_.back() + static_cast<int64_t>(size));
  sizes_.push_back(width);
  sizes_.push_back(height);
  add_text(caption, key, tokens, label);
  if (static_cast<int64_t>(pending_blob_.size()) >= std::max(layout_.blob_chunk_bytes, kBlobFlushBytes))
    flush_blob(false);
}

void ShardWriter::add_text(const std::string& caption, const std::string& key, const int32_t* tokens,
                           int32_t label) {
  captions_.push_back(caption);
  keys_.push_back(key);
  if (layout_.context_length > 0) {
    COCA_CHECK(tokens != nullptr, "shard writer: ", path_, " expects tokens");
    tokens_.insert(tokens_.end(), tokens, tokens + layout_.context_length);
  }
  if (layout_.labels) {
    COCA_CHECK(label >= 0 && label < static_cast<int32_t>(layout_.classnames.size()), "shard writer: label ", label,
               " outside the ", layout_.classnames.size(), " classes");
    labels_.push_back(label);
  }
  ++count_;
}

void ShardWriter::flush_blob(bool all) {
  // Whole chunks only until the end, so that no chunk is written twice (HDF5 would read back
  // and re-checksum a partly written one on every append).
  const int64_t chunk = layout_.blob_chunk_bytes, pending = static_cast<int64_t>(pending_blob_.size());
  const int64_t n = all ? pending : (blob_written_ + pending) / chunk * chunk - blob_written_;
  if (n <= 0) return;
  Lock g(h5::lock());
  append_rows(images_, H5T_NATIVE_UINT8, blob_written_, n, pending_blob_.data(), path_, "image_bytes");
  blob_written_ += n;
  pending_blob_.erase(pending_blob_.begin(), pending_blob_.begin() + n);
}

void ShardWriter::flush_images() {
  if (layout_.image_format != ShardImageFormat::raw) return;
  const size_t bytes = static_cast<size_t>(layout_.image_size) * layout_.image_size * 3;
  const int64_t rows = static_cast<int64_t>(pending_.size() / bytes);
  Lock g(h5::lock());
  append_rows(images_, H5T_NATIVE_UINT8, images_written_, rows, pending_.data(), path_, "images");
  images_written_ += rows;
  pending_.clear();
}

void ShardWriter::close() {
  if (closed_) return;
  flush_images();
  const bool encoded = layout_.image_format == ShardImageFormat::jpeg;
  if (encoded) flush_blob(true);
  Lock g(h5::lock());
  // Per-row datasets are written once, here: chunks of up to 1024 rows but never more rows
  // than the shard has, since HDF5 stores a partly filled chunk whole.
  const hsize_t row_chunk = static_cast<hsize_t>(std::clamp<int64_t>(count_, 1, 1024));
  if (encoded) {
    Handle off = create_rows_dataset(file_, "image_offsets", H5T_STD_I64LE, {}, row_chunk + 1, layout_, false,
                                     true, path_);
    append_rows(off, H5T_NATIVE_INT64, 0, count_ + 1, offsets_.data(), path_, "image_offsets");
    off.close(path_);
    Handle sz = create_rows_dataset(file_, "image_sizes", H5T_STD_I32LE, {2}, row_chunk, layout_, false, true,
                                    path_);
    append_rows(sz, H5T_NATIVE_INT32, 0, count_, sizes_.data(), path_, "image_sizes");
    sz.close(path_);
    h5::write_attribute(file_, "image_format", std::string(shard_image_format_name(layout_.image_format)), path_);
  }
  {
    Handle str = h5::utf8_string_type();
    std::vector<const char*> ptrs;
    for (const char* name : {"captions", "keys"}) {
      const auto& v = std::strcmp(name, "captions") == 0 ? captions_ : keys_;
      Handle d = create_rows_dataset(file_, name, str, {}, row_chunk, layout_, false, false, path_);
      ptrs.clear();
      for (const auto& s : v) ptrs.push_back(s.c_str());
      append_rows(d, str, 0, count_, ptrs.data(), path_, name);
      d.close(path_);
    }
  }
  if (layout_.context_length > 0) {
    Handle d = create_rows_dataset(file_, "tokens", H5T_STD_I32LE, {static_cast<hsize_t>(layout_.context_length)},
                                   row_chunk, layout_, false, true, path_);
    append_rows(d, H5T_NATIVE_INT32, 0, count_, tokens_.data(), path_, "tokens");
    d.close(path_);
  }
  if (layout_.labels) {
    Handle d = create_rows_dataset(file_, "labels", H5T_STD_I32LE, {}, row_chunk, layout_, false, true,
                                   path_);
    append_rows(d, H5T_NATIVE_INT32, 0, count_, labels_.data(), path_, "labels");
    h5::write_attribute(file_, "classnames", layout_.classnames, path_);
    d.close(path_);
  }
  h5::write_attribute(file_, "format", std::string(kShardFormatName), path_);
  h5::write_attribute(file_, "format_version", int64_t{shard_format_version(layout_.image_format)}, path_);
  h5::write_attribute(file_, "num_samples", count_, path_);
  h5::write_attribute(file_, "image_size", int64_t{layout_.image_size}, path_);
  h5::write_attribute(file_, "chunk_images", int64_t{layout_.chunk_images}, path_);
  h5::write_attribute(file_, "context_length", int64_t{layout_.context_length}, path_);
  h5::write_attribute(file_, "compression", std::string(compression_name(layout_.compression)), path_);
  h5::write_attribute(file_, "checksum", std::string(layout_.checksum ? kShardChecksumName : "none"), path_);
  images_.close(path_);
  check(H5Fflush(file_, H5F_SCOPE_LOCAL), "H5Fflush", path_);
  file_.close(path_);
  closed_ = true;
}

// ---- reader -------------------------------------------------------------------------------

namespace {

// A Fletcher32 mismatch sits deep in HDF5's error stack ("data error detected by Fletcher32
// checksum") under generic "can't read data" frames; look for it there so the error can say
// what happened.
bool checksum_mismatch_on_stack() {
  bool found = false;
  auto visit = [](unsigned, const H5E_error2_t* e, void* data) -> herr_t {
    if (e->desc && std::strstr(e->desc, "Fletcher32")) *static_cast<bool*>(data) = true;
    return 0;
  };
  if (H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, visit, &found) < 0) return false;
  return found;
}

[[noreturn]] void read_failed(const char* name, int64_t start, int64_t count, const std::string& path) {
  if (checksum_mismatch_on_stack()) {
    H5Eclear2(H5E_DEFAULT);
    throw Error(str_cat("shard ", path, ": dataset '", name, "' rows [", start, ", ", start + count,
                        "): checksum does not match, the data is damaged"));
  }
  h5::fail(str_cat("reading ", name, " rows [", start, ", ", start + count, ")"), path);
}

// Selects rows [start, start + count) of `dset` in a new file dataspace; `cnt` gets the
// selection's shape.
Handle select_rows(hid_t dset, int64_t start, int64_t count, std::vector<hsize_t>& cnt, const std::string& path) {
  const std::vector<hsize_t> dims = h5::dataset_dims(dset, path);
  std::vector<hsize_t> off(dims.size(), 0);
  cnt = dims;
  off[0] = static_cast<hsize_t>(start);
  cnt[0] = static_cast<hsize_t>(count);
  Handle fspace(check_id(H5Dget_space(dset), "H5Dget_space", path), Handle::Kind::dataspace);
  check(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, off.data(), nullptr, cnt.data(), nullptr),
        "H5Sselect_hyperslab", path);
  return fspace;
}

void read_rows(hid_t dset, hid_t mem_type, hid_t xfer, int64_t start, int64_t count, void* out,
               const std::string& path, const char* name) {
  if (count == 0) return;
  std::vector<hsize_t> cnt;
  Handle fspace = select_rows(dset, start, count, cnt, path);
  Handle mspace(check_id(H5Screate_simple(static_cast<int>(cnt.size()), cnt.data(), nullptr), "H5Screate_simple",
                         path),
                Handle::Kind::dataspace);
  if (H5Dread(dset, mem_type, mspace, fspace, xfer, out) < 0) read_failed(name, start, count, path);
}


// True when a dataset's creation properties (`dcpl`) include the Fletcher32 filter.
bool has_fletcher32(hid_t dcpl, const std::string& path) {
  const int nfilters = check(H5Pget_nfilters(dcpl), "H5Pget_nfilters", path);
  for (int i = 0; i < nfilters; ++i) {
    unsigned flags = 0;
    size_t nvalues = 0;
    const H5Z_filter_t id =
        H5Pget_filter2(dcpl, static_cast<unsigned>(i), &flags, &nvalues, nullptr, 0, nullptr, nullptr);
    check(id < 0 ? -1 : 0, "H5Pget_filter2", path);
    if (id == H5Z_FILTER_FLETCHER32) return true;
  }
  return false;
}

}  // namespace

ShardReader::ShardReader(const std::string& path) : path_(path) {
  std::error_code ec;
  COCA_CHECK(std::filesystem::is_regular_file(path, ec), "shard ", path, " is missing (listed in index.json)");
  h5::init();
  Lock g(h5::lock());
  file_ = Handle(check_id(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "open shard", path_),
                 Handle::Kind::file);
  // Checksum verification on read is HDF5's default; set it explicitly so no global
  // default can turn it off behind our back.
  xfer_ = Handle(check_id(H5Pcreate(H5P_DATASET_XFER), "H5Pcreate(xfer)", path_), Handle::Kind::plist);
  check(H5Pset_edc_check(xfer_, H5Z_ENABLE_EDC), "H5Pset_edc_check", path_);
  auto open = [&](const char* name) {
    return Handle(check_id(H5Dopen2(file_, name, H5P_DEFAULT), (std::string("open dataset ") + name).c_str(), path_),
                  Handle::Kind::dataset);
  };
  if (h5::has_attribute(file_, "format_version"))
    format_version_ = static_cast<int>(h5::read_int_attribute(file_, "format_version", path_));
  COCA_CHECK(format_version_ == kShardFormatVersion || format_version_ == kShardFormatVersionEncoded, "shard ", path_,
             ": format_version ", format_version_, " is not supported (this build reads 1 and 2)");
  if (encoded()) {
    const std::string fmt = h5::has_attribute(file_, "image_format")
                                ? h5::read_string_attribute(file_, "image_format", path_)
                                : std::string("(none)");
    COCA_CHECK(fmt == "jpeg", "shard ", path_, ": format_version 2 with image_format '", fmt, "' (expected jpeg)");
    blob_ = open("image_bytes");
    const auto bdims = h5::dataset_dims(blob_, path_);
    COCA_CHECK(bdims.size() == 1, "shard ", path_, ": image_bytes must be one-dimensional");
    Handle off = open("image_offsets");
    const auto odims = h5::dataset_dims(off, path_);
    COCA_CHECK(odims.size() == 1 && odims[0] >= 1, "shard ", path_, ": image_offsets must be [N + 1]");
    size_ = static_cast<int64_t>(odims[0]) - 1;
    offsets_.resize(odims[0]);
    read_rows(off, H5T_NATIVE_INT64, xfer_, 0, static_cast<int64_t>(odims[0]), offsets_.data(), path_,
              "image_offsets");
    const int64_t blob_bytes = static_cast<int64_t>(bdims[0]);
    COCA_CHECK(offsets_[0] == 0, "shard ", path_, ": image_offsets[0] is ", offsets_[0], ", not 0");
    for (int64_t i = 0; i < size_; ++i)
      COCA_CHECK(offsets_[i + 1] > offsets_[i], "shard ", path_, ": image_offsets decrease or repeat at row ", i,
                 " (", offsets_[i], " then ", offsets_[i + 1], ")");
    COCA_CHECK(offsets_.back() == blob_bytes, "shard ", path_, ": image_offsets end at byte ", offsets_.back(),
               " but image_bytes holds ", blob_bytes, " (truncated or damaged)");
    Handle sz = open("image_sizes");
    const auto sdims = h5::dataset_dims(sz, path_);
    COCA_CHECK(sdims.size() == 2 && sdims[1] == 2 && static_cast<int64_t>(sdims[0]) == size_, "shard ", path_,
               ": image_sizes must be [", size_, ", 2]");
    sizes_.resize(static_cast<size_t>(2 * size_));
    read_rows(sz, H5T_NATIVE_INT32, xfer_, 0, size_, sizes_.data(), path_, "image_sizes");
    for (int64_t i = 0; i < 2 * size_; ++i)
      COCA_CHECK(sizes_[static_cast<size_t>(i)] > 0, "shard ", path_, ": image_sizes row ", i / 2,
                 " is not a positive size");
    image_size_ = static_cast<int>(h5::read_int_attribute(file_, "image_size", path_));
    chunk_images_ = h5::has_attribute(file_, "chunk_images")
                        ? static_cast<int>(h5::read_int_attribute(file_, "chunk_images", path_))
                        : 16;
    Handle dcpl(check_id(H5Dget_create_plist(blob_), "H5Dget_create_plist", path_), Handle::Kind::plist);
    has_checksums_ = has_fletcher32(dcpl, path_);
  } else {
    images_ = open("images");
    const auto idims = h5::dataset_dims(images_, path_);
    COCA_CHECK(idims.size() == 4 && idims[1] == idims[2] && idims[3] == 3, "shard ", path_,
               ": images must be [N, S, S, 3]");
    size_ = static_cast<int64_t>(idims[0]);
    image_size_ = static_cast<int>(idims[1]);
    {
      Handle dcpl(check_id(H5Dget_create_plist(images_), "H5Dget_create_plist", path_), Handle::Kind::plist);
      hsize_t chunk[4] = {0, 0, 0, 0};
      const H5D_layout_t layout = H5Pget_layout(dcpl);
      check(layout == H5D_LAYOUT_ERROR ? -1 : 0, "H5Pget_layout", path_);
      if (layout == H5D_CHUNKED) {
        check(H5Pget_chunk(dcpl, 4, chunk), "H5Pget_chunk", path_);
        has_checksums_ = has_fletcher32(dcpl, path_);
      }
      chunk_images_ = chunk[0] > 0 ? static_cast<int>(chunk[0]) : static_cast<int>(std::max<int64_t>(size_, 1));
    }
  }
  captions_ = open("captions");
  keys_ = open("keys");
  auto expect_rows = [&](const Handle& d, const char* name, size_t nd) {
    const auto dims = h5::dataset_dims(d, path_);
    COCA_CHECK(dims.size() == nd && static_cast<int64_t>(dims[0]) == size_, "shard ", path_, ": ", name, " has ",
               dims.empty() ? 0 : dims[0], " rows (rank ", dims.size(), "), images has ", size_);
    return dims;
  };
  expect_rows(captions_, "captions", 1);
  expect_rows(keys_, "keys", 1);
  if (h5::has_dataset(file_, "tokens")) {
    tokens_ = open("tokens");
    context_length_ = static_cast<int>(expect_rows(tokens_, "tokens", 2)[1]);
  }
  if (h5::has_dataset(file_, "labels")) {
    labels_ = open("labels");
    expect_rows(labels_, "labels", 1);
    has_labels_ = true;
    if (h5::has_attribute(file_, "classnames"))
      classnames_ = h5::read_string_list_attribute(file_, "classnames", path_);
  }
}

void ShardReader::check_rows(int64_t start, int64_t count, const char* what) const {
  COCA_CHECK(start >= 0 && count >= 0 && start + count <= size_, "shard ", path_, ": ", what, " rows [", start, ", ",
             start + count, ") outside [0, ", size_, ")");
}

void ShardReader::set_vocab_size(int64_t vocab_size) {
  COCA_CHECK(vocab_size >= 0, "shard ", path_, ": vocabulary size ", vocab_size, " is negative");
  vocab_size_ = vocab_size;
}


void ShardReader::read_encoded(int64_t start, int64_t count, std::vector<uint8_t>& bytes) const {
  COCA_CHECK(encoded(), "shard ", path_, " stores raw pixels (format_version 1), not encoded images");
  check_rows(start, count, "image_bytes");
  const int64_t b0 = offsets_[static_cast<size_t>(start)], b1 = offsets_[static_cast<size_t>(start + count)];
  bytes.resize(static_cast<size_t>(b1 - b0));
  if (b1 == b0) return;
  Lock g(h5::lock());
  const hsize_t off = static_cast<hsize_t>(b0), cnt = static_cast<hsize_t>(b1 - b0);
  Handle fspace(check_id(H5Dget_space(blob_), "H5Dget_space", path_), Handle::Kind::dataspace);
  check(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &off, nullptr, &cnt, nullptr), "H5Sselect_hyperslab", path_);
  Handle mspace(check_id(H5Screate_simple(1, &cnt, nullptr), "H5Screate_simple", path_), Handle::Kind::dataspace);
  if (H5Dread(blob_, H5T_NATIVE_UINT8, mspace, fspace, xfer_, bytes.data()) < 0)
    read_failed("image_bytes", start, count, path_);
}

void ShardReader::read_images(int64_t start, int64_t count, uint8_t* out) const {
  COCA_CHECK(!encoded(), "shard ", path_, " stores encoded images (format_version 2): read_encoded, not read_images");
  check_rows(start, count, "images");
  Lock g(h5::lock());
  read_rows(images_, H5T_NATIVE_UINT8, xfer_, start, count, out, path_, "images");
}

void ShardReader::read_tokens(int64_t start, int64_t count, int32_t* out) const {
  COCA_CHECK(has_tokens(), "shard ", path_, " has no tokens dataset (made without a tokenizer)");
  check_rows(start, count, "tokens");
  {
    Lock g(h5::lock());
    read_rows(tokens_, H5T_NATIVE_INT32, xfer_, start, count, out, path_, "tokens");
  }
  if (vocab_size_ <= 0) return;
  const size_t n = static_cast<size_t>(count) * static_cast<size_t>(context_length_);
  for (size_t i = 0; i < n; ++i)
    if (out[i] < 0 || out[i] >= vocab_size_) {
      const int64_t row = start + static_cast<int64_t>(i) / context_length_;
      throw Error(str_cat("shard ", path_, ": token id ", out[i], " at row ", row, " is outside the vocabulary [0, ",
                          vocab_size_, ")"));
    }
}

void ShardReader::read_labels(int64_t start, int64_t count, int32_t* out) const {
  COCA_CHECK(has_labels(), "shard ", path_, " has no labels dataset (not a classification set)");
  check_rows(start, count, "labels");
  Lock g(h5::lock());
  read_rows(labels_, H5T_NATIVE_INT32, xfer_, start, count, out, path_, "labels");
}

std::vector<std::string> ShardReader::read_captions(int64_t start, int64_t count) const {
  check_rows(start, count, "captions");
  Lock g(h5::lock());
  return h5::read_strings(captions_, start, count, path_);
}

std::vector<std::string> ShardReader::read_keys(int64_t start, int64_t count) const {
  check_rows(start, count, "keys");
  Lock g(h5::lock());
  return h5::read_strings(keys_, start, count, path_);
}

}  // namespace coca
