#pragma once
// Whole-dataset HDF5 I/O for tensors (f32, f64, i32, u8), every HDF5 call checked.
#include <string>

#include "coca/tensor/tensor.h"

namespace coca::h5 {

// Reads dataset `name` of file `path` into a contiguous tensor; the dtype follows the file's
// (floating point 32/64, signed 32-bit integer, unsigned 8-bit).
Tensor read_tensor(const std::string& path, const std::string& name);

// Writes tensors into a new file (written as path.tmp, renamed when complete).
class Writer {
 public:
  explicit Writer(const std::string& path);
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;
  void write(const std::string& name, const Tensor& t);  // scalars as rank-0 datasets
  void close();  // flushes and renames; the destructor removes an unclosed temporary

 private:
  std::string path_, tmp_;
  long long file_ = -1;
};

}  // namespace coca::h5
