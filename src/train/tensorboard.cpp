#include "coca/train/tensorboard.h"

#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "coca/tensor/error.h"

namespace coca::train {

namespace fs = std::filesystem;

// ---- CRC32C and the record framing ------------------------------------------------------

namespace {

constexpr std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr std::array<uint32_t, 256> kCrc32cTable = make_crc32c_table();

void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

}  // namespace

uint32_t crc32c(std::string_view data) {
  uint32_t c = 0xFFFFFFFFu;
  for (const char ch : data) c = kCrc32cTable[(c ^ static_cast<uint8_t>(ch)) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t mask_crc32c(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

std::string tfrecord_frame(std::string_view data) {
  std::string out;
  out.reserve(data.size() + 16);
  put_le(out, data.size(), 8);
  const uint32_t len_crc = mask_crc32c(crc32c(std::string_view(out.data(), 8)));
  put_le(out, len_crc, 4);
  out.append(data);
  put_le(out, mask_crc32c(crc32c(data)), 4);
  return out;
}

// ---- the Event protobuf -------------------------------------------------------------------

namespace {

// Protobuf wire types: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32.
void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void put_key(std::string& out, int field, int wire_type) { put_varint(out, (uint64_t(field) << 3) | wire_type); }
void put_bytes_field(std::string& out, int field, std::string_view bytes) {
  put_key(out, field, 2);
  put_varint(out, bytes.size());
  out.append(bytes);
}

// Event fields 1 and 2. int64 is a plain varint (a negative step takes 10 bytes).
std::string event_head(double wall_time, int64_t step) {
  std::string e;
  uint64_t bits;
  std::memcpy(&bits, &wall_time, sizeof bits);
  put_key(e, 1, 1);
  put_le(e, bits, 8);
  if (step != 0) {
    put_key(e, 2, 0);
    put_varint(e, static_cast<uint64_t>(step));
  }
  return e;
}

}  // namespace

std::string encode_file_version_event(double wall_time) {
  std::string e = event_head(wall_time, 0);
  put_bytes_field(e, 3, "brain.Event:2");
  return e;
}

std::string encode_session_start_event(double wall_time, int64_t step) {
  std::string log;
  put_key(log, 1, 0);
  put_varint(log, 1);  // SessionStatus START
  std::string e = event_head(wall_time, step);
  put_bytes_field(e, 7, log);
  return e;
}

std::string encode_scalars_event(double wall_time, int64_t step, const Scalars& values) {
  std::string summary;
  for (const auto& [tag, v] : values) {
    std::string value;
    put_bytes_field(value, 1, tag);
    uint32_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    put_key(value, 2, 5);
    put_le(value, bits, 4);
    put_bytes_field(summary, 1, value);
  }
  std::string e = event_head(wall_time, step);
  put_bytes_field(e, 5, summary);
  return e;
}

// ---- metrics records to tags -------------------------------------------------------------

Scalars tensorboard_scalars(const nlohmann::json& record) {
  Scalars out;
  if (!record.is_object() || !record.contains("step") || !record.at("step").is_number()) return out;
  auto kind_of = [](const std::string& key) -> std::string {
    for (const char* k : {"val", "zeroshot"})
      if (key.starts_with(std::string(k) + "_")) return k;
    return "";
  };
  std::string record_kind = "train";  // for fields that name no kind (epoch)
  for (const auto& [key, v] : record.items())
    if (!kind_of(key).empty()) {
      record_kind = kind_of(key);
      break;
    }
  for (const auto& [key, v] : record.items()) {
    if (key == "step" || !v.is_number()) continue;  // is_number excludes booleans
    const std::string kind = kind_of(key);
    std::string name = kind.empty() ? key : key.substr(kind.size() + 1);
    if (name == "samples_per_s") name = "samples_per_second";
    else if (name == "samples_per_s_per_rank") name = "samples_per_second_per_rank";
    out.emplace_back((kind.empty() ? record_kind : kind) + "/" + name, v.get<float>());
  }
  return out;
}

// ---- the file ----------------------------------------------------------------------------

std::string new_event_file_path(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  COCA_CHECK(!ec, "tensorboard: cannot create ", dir, ": ", ec.message());
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') std::strcpy(host, "localhost");
  const std::string base = (fs::path(dir) / str_cat("events.out.tfevents.", std::time(nullptr), ".", host)).string();
  std::string path = base;
  for (int n = 1; fs::exists(path); ++n) path = str_cat(base, ".", n);
  return path;
}

namespace {
double wall_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}
}  // namespace

EventFileWriter::EventFileWriter(const std::string& path, int64_t first_step) : path_(path) {
  f_ = std::fopen(path.c_str(), "ab");
  COCA_CHECK(f_ != nullptr, "tensorboard: cannot open ", path, ": ", std::strerror(errno));
  const double now = wall_seconds();
  try {
    append(encode_file_version_event(now));
    append(encode_session_start_event(now, first_step));
  } catch (...) {
    std::fclose(f_);
    f_ = nullptr;
    throw;
  }
}

EventFileWriter::~EventFileWriter() {
  try {
    close();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "warning: %s\n", e.what());
  }
}

void EventFileWriter::append(const std::string& event) {
  COCA_CHECK(f_ != nullptr, "tensorboard: write to ", path_, " after it was closed");
  const std::string rec = tfrecord_frame(event);
  errno = 0;
  const bool ok = std::fwrite(rec.data(), 1, rec.size(), f_) == rec.size() && std::fflush(f_) == 0;
  COCA_CHECK(ok, "write to ", path_, " failed (", errno ? std::strerror(errno) : "disk full?", ")");
}

void EventFileWriter::write_scalars(double wall_time, int64_t step, const Scalars& values) {
  append(encode_scalars_event(wall_time, step, values));
}

void EventFileWriter::write(const nlohmann::json& record) {
  const Scalars values = tensorboard_scalars(record);
  if (values.empty()) return;
  write_scalars(wall_seconds(), record.at("step").get<int64_t>(), values);
}

void EventFileWriter::close() {
  if (!f_) return;
  std::FILE* f = f_;
  f_ = nullptr;
  const bool flushed = std::fflush(f) == 0 && ::fsync(::fileno(f)) == 0;
  const int err = errno;
  const bool closed = std::fclose(f) == 0;
  COCA_CHECK(flushed && closed, "tensorboard: closing ", path_, " failed: ", std::strerror(flushed ? errno : err));
}

}  // namespace coca::train
