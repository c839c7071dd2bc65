#pragma once
// One shard file: ShardWriter creates it, ShardReader reads it. The layout (datasets,
// attributes, chunking) is documented in data_tools/README.md:
//   images   uint8 [N, S, S, 3]  chunked [C, S, S, 3], optionally gzip or lzf
//   captions UTF-8 strings [N]
//   keys     UTF-8 strings [N]   source identifiers
//   tokens   int32 [N, L]        when a tokenizer was given
//   labels   int32 [N]           classification sets, with a "classnames" attribute
// Every dataset carries HDF5's Fletcher32 checksum per chunk (root attribute "checksum" =
// "fletcher32"), so damaged bytes fail the read that touches them instead of being trained
// on; shards written before checksums existed still read, unchecked.
#include <cstdint>
#include <string>
#include <vector>

#include "coca/data/h5.h"

namespace coca {

enum class Compression { none, gzip, lzf };
Compression parse_compression(const std::string& name);
const char* compression_name(Compression c);

struct ShardLayout {
  int image_size = 256;     // S
  int chunk_images = 16;    // C: images per HDF5 chunk, the reader's unit of I/O
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
  void add(const uint8_t* rgb, const std::string& caption, const std::string& key,
           const int32_t* tokens = nullptr, int32_t label = -1);
  int64_t size() const { return count_; }
  const std::string& path() const { return path_; }
  // Writes the buffered rows and closes the file; it is complete afterwards.
  void close();

 private:
  void flush_images();

  std::string path_;
  ShardLayout layout_;
  h5::Handle file_, images_;
  int64_t count_ = 0;
  int64_t images_written_ = 0;
  std::vector<uint8_t> pending_;  // up to one chunk of images
  std::vector<std::string> captions_, keys_;
  std::vector<int32_t> tokens_, labels_;
  bool closed_ = false;
};

class ShardReader {
 public:
  explicit ShardReader(const std::string& path);
  const std::string& path() const { return path_; }
  int64_t size() const { return size_; }
  int image_size() const { return image_size_; }
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
  void read_images(int64_t start, int64_t count, uint8_t* out) const;   // count*S*S*3 bytes
  void read_tokens(int64_t start, int64_t count, int32_t* out) const;   // count*L ids
  void read_labels(int64_t start, int64_t count, int32_t* out) const;
  std::vector<std::string> read_captions(int64_t start, int64_t count) const;
  std::vector<std::string> read_keys(int64_t start, int64_t count) const;

 private:
  void check_rows(int64_t start, int64_t count, const char* what) const;

  std::string path_;
  h5::Handle file_, images_, captions_, keys_, tokens_, labels_;
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
