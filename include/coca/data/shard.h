#pragma once
// One shard file: ShardWriter creates it, ShardReader reads it. The layout (datasets,
// attributes, chunking) is documented in data_tools/README.md. Images are stored one of two
// ways, told apart by the root attribute format_version:
//   1 (raw):  images uint8 [N, S, S, 3]  chunked [C, S, S, 3], optionally gzip or lzf
//   2 (jpeg): image_bytes uint8 [total bytes]  the encoded files back to back, 64 KiB chunks
//             image_offsets int64 [N + 1]    row i is image_bytes[offsets[i], offsets[i+1])
//             image_sizes int32 [N, 2]       (width, height) of each stored image
// and in both:
//   captions UTF-8 strings [N]
//   keys     UTF-8 strings [N]   source identifiers
//   tokens   int32 [N, L]        when a tokenizer was given
//   labels   int32 [N]           classification sets, with a "classnames" attribute
// Every dataset carries HDF5's Fletcher32 checksum per chunk (root attribute "checksum" =
// "fletcher32"), so damaged bytes fail the read that touches them instead of being trained
// on; shards written before checksums existed still read, unchecked.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "coca/data/h5.h"

namespace coca {

enum class Compression { none, gzip, lzf };
// raw: decoded S x S pixels (format 1); jpeg: encoded files (format 2).
enum class ShardImageFormat { raw, jpeg };
ShardImageFormat parse_shard_image_format(const std::string& name);
const char* shard_image_format_name(ShardImageFormat f);
// The format_version a shard of that image format carries.
int shard_format_version(ShardImageFormat f);
Compression parse_compression(const std::string& name);
const char* compression_name(Compression c);

struct ShardLayout {
  ShardImageFormat image_format = ShardImageFormat::raw;
  int image_size = 256;     // S (raw); for jpeg the longest side stored (coca-shard --max-side)
  int chunk_images = 16;    // C: images per HDF5 chunk, the reader's unit of I/O
  // jpeg: bytes per image_bytes chunk. HDF5 stores the last, partly filled chunk whole, so
  // this bounds what a shard wastes (1 MiB chunks cost a 256-sample shard of 17 KB images
  // 18% of its file); a run of C rows still reads a handful of chunks.
  int64_t blob_chunk_bytes = int64_t{1} << 16;
  Compression compression = Compression::none;
  int gzip_level = 4;
  int context_length = 0;   // L; 0 = no tokens dataset
  bool labels = false;
  std::vector<std::string> classnames;
  // Fletcher32 per chunk on every dataset. Off only to produce unchecked files, as shards
  // from before checksums were (tests, the cost measurement).
  bool checksum = true;
};

// The root attribute / index.json value naming the per-chunk checksum.
constexpr const char* kShardChecksumName = "fletcher32";

class ShardWriter {
 public:
  // Creates (truncates) `path`. Callers write to a temporary name and rename after close().
  ShardWriter(std::string path, ShardLayout layout);
  ~ShardWriter();
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  // rgb: S*S*3 bytes; tokens: L ids when the layout has tokens; label when it has labels.
  // Raw layouts only.
  void add(const uint8_t* rgb, const std::string& caption, const std::string& key,
           const int32_t* tokens = nullptr, int32_t label = -1);
  // An encoded image of width x height pixels (jpeg layouts only), stored as given.
  void add_encoded(const uint8_t* bytes, size_t size, int width, int height, const std::string& caption,
                   const std::string& key, const int32_t* tokens = nullptr, int32_t label = -1);
  int64_t size() const { return count_; }
  const std::string& path() const { return path_; }
  // Writes the buffered rows and closes the file; it is complete afterwards.
  void close();

 private:
  void flush_images();
  void flush_blob(bool all);
  void add_text(const std::string& caption, const std::string& key, const int32_t* tokens, int32_t label);

  std::string path_;
  ShardLayout layout_;
  h5::Handle file_, images_;
  int64_t count_ = 0;
  int64_t images_written_ = 0;
  std::vector<uint8_t> pending_;  // up to one chunk of images
  std::vector<std::string> captions_, keys_;
  std::vector<int32_t> tokens_, labels_;
  // jpeg layouts: the blob written so far, the part not yet appended, offsets and sizes.
  // Appends go to HDF5 in runs of whole chunks of at least kBlobFlushBytes.
  static constexpr int64_t kBlobFlushBytes = int64_t{1} << 20;
  int64_t blob_written_ = 0;
  std::vector<uint8_t> pending_blob_;
  std::vector<int64_t> offsets_{0};
  std::vector<int32_t> sizes_;
  bool closed_ = false;
};

class ShardReader {
 public:
  explicit ShardReader(const std::string& path);
  const std::string& path() const { return path_; }
  int64_t size() const { return size_; }
  int image_size() const { return image_size_; }
  int format_version() const { return format_version_; }
  bool encoded() const { return format_version_ >= 2; }
  int context_length() const { return context_length_; }
  int chunk_images() const { return chunk_images_; }
  bool has_tokens() const { return context_length_ > 0; }
  bool has_labels() const { return has_labels_; }
  const std::vector<std::string>& classnames() const { return classnames_; }
  // True when the images dataset carries Fletcher32 checksums (shards from before they
  // existed do not); HDF5 then verifies every chunk a read touches.
  bool has_checksums() const { return has_checksums_; }

  // Bounds the token ids read_tokens accepts to [0, vocab_size): an id outside it (a shard
  // made with another tokenizer, or damaged) is an error naming the shard, the id and the
  // row, instead of an out-of-range index inside the embedding. 0 (the default): unchecked.
  void set_vocab_size(int64_t vocab_size);
  int64_t vocab_size() const { return vocab_size_; }

  // Rows [start, start + count); errors name the file and the rows. A chunk whose checksum
  // does not match throws an Error saying so (the data is damaged).
  void read_images(int64_t start, int64_t count, uint8_t* out) const;   // count*S*S*3 bytes (format 1)
  // Format 2: the encoded bytes of rows [start, start + count) in one contiguous read;
  // row i is bytes[image_offset(i) - image_offset(start), image_offset(i + 1) - image_offset(start)).
  void read_encoded(int64_t start, int64_t count, std::vector<uint8_t>& bytes) const;
  int64_t image_offset(int64_t row) const { return offsets_.at(static_cast<size_t>(row)); }
  // (width, height) of row `row` as recorded by the writer (format 2).
  std::pair<int, int> stored_size(int64_t row) const {
    return {sizes_.at(static_cast<size_t>(2 * row)), sizes_.at(static_cast<size_t>(2 * row + 1))};
  }
  void read_tokens(int64_t start, int64_t count, int32_t* out) const;   // count*L ids
  void read_labels(int64_t start, int64_t count, int32_t* out) const;
  std::vector<std::string> read_captions(int64_t start, int64_t count) const;
  std::vector<std::string> read_keys(int64_t start, int64_t count) const;

 private:
  void check_rows(int64_t start, int64_t count, const char* what) const;

  std::string path_;
  h5::Handle file_, images_, captions_, keys_, tokens_, labels_, blob_;
  int format_version_ = 1;
  std::vector<int64_t> offsets_;  // format 2: N + 1
  std::vector<int32_t> sizes_;    // format 2: N x (width, height)
  h5::Handle xfer_;  // dataset transfer list with checksum verification (EDC) on
  int64_t vocab_size_ = 0;
  bool has_checksums_ = false;
  int64_t size_ = 0;
  int image_size_ = 0;
  int context_length_ = 0;
  int chunk_images_ = 0;
  bool has_labels_ = false;
  std::vector<std::string> classnames_;
};

}  // namespace coca
