#pragma once
// TensorBoard event files, written without TensorFlow: the TFRecord framing and the few Event
// protobuf fields that scalars need, encoded by hand.
//
// A record on disk: uint64 length (little-endian), masked CRC32C of those 8 bytes, the data,
// masked CRC32C of the data. The data is a serialized tensorboard.Event:
//   Event      { double wall_time = 1; int64 step = 2; string file_version = 3;
//                Summary summary = 5; SessionLog session_log = 7; }
//   Summary    { repeated Value value = 1; }
//   Value      { string tag = 1; float simple_value = 2; }
//   SessionLog { SessionStatus status = 1; }   (START = 1)
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace coca::train {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as TFRecord uses it.
uint32_t crc32c(std::string_view data);
// TFRecord stores CRCs rotated and offset, so that a CRC of data holding CRCs stays robust.
uint32_t mask_crc32c(uint32_t crc);
// One TFRecord: length, its masked CRC, `data`, its masked CRC.
std::string tfrecord_frame(std::string_view data);

using Scalars = std::vector<std::pair<std::string, float>>;  // (tag, value)
std::string encode_file_version_event(double wall_time);      // "brain.Event:2", step 0
std::string encode_session_start_event(double wall_time, int64_t step);
std::string encode_scalars_event(double wall_time, int64_t step, const Scalars& values);

// The scalars of one metrics.jsonl record: every numeric field but "step", tagged by the kind
// of record its fields name, so that new fields need no code here. Fields "zeroshot_X" give
// "zeroshot/X" and "val_X" give "val/X"; the other numbers of such a record (epoch) go under
// its first kind ("val" before "zeroshot"); all other records are "train/<field>", with
// OpenCLIP's names for the throughput fields (samples_per_s -> samples_per_second). Records
// without a step give nothing.
Scalars tensorboard_scalars(const nlohmann::json& record);

// <dir>/events.out.tfevents.<unix seconds>.<hostname>, the name TensorBoard looks for (files
// of a run are read in name order, which is start order); ".1", ".2", ... are added if that
// name is taken. Creates `dir`.
std::string new_event_file_path(const std::string& dir);

// Writes one event file: the file_version header and a SessionLog START at `first_step`
// (the first step this process logs), then one scalars Event per metrics record. Each record
// is flushed to the OS as written, so a live TensorBoard follows the run; close() (or the
// destructor) fsyncs. TensorBoard drops earlier points at steps >= a later file's START (its
// Python loader) or >= a later point of the same tag (its Rust loader), so after a resume the
// steps since the checkpoint show once.
class EventFileWriter {
 public:
  EventFileWriter(const std::string& path, int64_t first_step);
  ~EventFileWriter();
  EventFileWriter(const EventFileWriter&) = delete;
  EventFileWriter& operator=(const EventFileWriter&) = delete;
  // Throws coca::Error naming the file if the write fails (as metrics.jsonl does).
  void write(const nlohmann::json& record);
  void write_scalars(double wall_time, int64_t step, const Scalars& values);
  void close();  // fsync and close; throws naming the file on failure
  const std::string& path() const { return path_; }

 private:
  void append(const std::string& event);
  std::FILE* f_ = nullptr;
  std::string path_;
};

}  // namespace coca::train
