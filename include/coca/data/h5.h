#pragma once
// Thin, checked HDF5 helpers: every call's status is tested and a failure becomes a
// coca::Error naming the operation, the file and HDF5's innermost message. Handles close
// themselves. HDF5 calls from several threads go through h5::lock() (the library is built
// thread-safe on Debian, but other builds are not).
#include <hdf5.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "coca/tensor/error.h"

namespace coca::h5 {

std::recursive_mutex& lock();
// Turns off HDF5's own stderr printing (errors are reported through exceptions) and
// registers the LZF filter. Idempotent; every entry point below calls it.
void init();
// The innermost message of HDF5's current error stack, or "" when empty.
std::string last_error();

[[noreturn]] void fail(const std::string& what, const std::string& file);
inline hid_t check_id(hid_t id, const char* what, const std::string& file) {
  if (id < 0) fail(what, file);
  return id;
}
inline herr_t check(herr_t rc, const char* what, const std::string& file) {
  if (rc < 0) fail(what, file);
  return rc;
}

// Owns an hid_t and closes it with the right H5?close.
class Handle {
 public:
  enum class Kind { file, dataset, dataspace, datatype, attribute, plist, group };
  Handle() = default;
  Handle(hid_t id, Kind kind) : id_(id), kind_(kind) {}
  Handle(Handle&& o) noexcept : id_(o.id_), kind_(o.kind_) { o.id_ = -1; }
  Handle& operator=(Handle&& o) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }
  hid_t get() const { return id_; }
  operator hid_t() const { return id_; }
  bool valid() const { return id_ >= 0; }
  // Closes now and reports a failed close (a failed file close can mean lost data).
  void close(const std::string& file);
  void reset() noexcept;

 private:
  hid_t id_ = -1;
  Kind kind_ = Kind::file;
};

Handle utf8_string_type();  // variable-length UTF-8 string

bool has_attribute(hid_t loc, const char* name);
bool has_dataset(hid_t file, const char* name);
void write_attribute(hid_t loc, const char* name, const std::string& value, const std::string& file);
void write_attribute(hid_t loc, const char* name, int64_t value, const std::string& file);
void write_attribute(hid_t loc, const char* name, const std::vector<std::string>& values, const std::string& file);
std::string read_string_attribute(hid_t loc, const char* name, const std::string& file);
int64_t read_int_attribute(hid_t loc, const char* name, const std::string& file);
std::vector<std::string> read_string_list_attribute(hid_t loc, const char* name, const std::string& file);

// Dimensions of a dataset.
std::vector<hsize_t> dataset_dims(hid_t dataset, const std::string& file);
// Reads rows [start, start+count) of a variable-length string dataset [N].
std::vector<std::string> read_strings(hid_t dataset, int64_t start, int64_t count, const std::string& file);

}  // namespace coca::h5
