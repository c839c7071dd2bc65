#include "coca/eval/h5_tensor.h"

#include <hdf5.h>

#include <cstdio>
#include <filesystem>

namespace coca::h5 {

namespace {

// HDF5 prints its own error stack by default; we report through exceptions instead.
struct QuietErrors {
  QuietErrors() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }
};
const QuietErrors quiet;

hid_t check(hid_t id, const char* what, const std::string& path) {
  COCA_CHECK(id >= 0, "HDF5 ", what, " failed for ", path);
  return id;
}

void check_status(herr_t st, const char* what, const std::string& path) {
  COCA_CHECK(st >= 0, "HDF5 ", what, " failed for ", path);
}

hid_t mem_type(DType t) {
  switch (t) {
    case DType::f32: return H5T_NATIVE_FLOAT;
    case DType::f64: return H5T_NATIVE_DOUBLE;
    case DType::i32: return H5T_NATIVE_INT32;
    case DType::u8: return H5T_NATIVE_UINT8;
    default: throw Error(str_cat("HDF5: dtype ", dtype_name(t), " cannot be stored"));
  }
}

}  // namespace

Tensor read_tensor(const std::string& path, const std::string& name) {
  hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  COCA_CHECK(file >= 0, "HDF5 file ", path, ": cannot open (missing or not an HDF5 file)");
  hid_t ds = H5Dopen2(file, name.c_str(), H5P_DEFAULT);
  if (ds < 0) {
    H5Fclose(file);
    throw Error(str_cat("HDF5 file ", path, ": no dataset '", name, "'"));
  }
  Tensor out;
  try {
    hid_t space = check(H5Dget_space(ds), "H5Dget_space", path);
    const int nd = H5Sget_simple_extent_ndims(space);
    std::vector<hsize_t> dims(std::max(nd, 0));
    if (nd > 0) H5Sget_simple_extent_dims(space, dims.data(), nullptr);
    H5Sclose(space);
    hid_t ftype = check(H5Dget_type(ds), "H5Dget_type", path);
    const H5T_class_t cls = H5Tget_class(ftype);
    const size_t size = H5Tget_size(ftype);
    const H5T_sign_t sign = cls == H5T_INTEGER ? H5Tget_sign(ftype) : H5T_SGN_NONE;
    H5Tclose(ftype);
    DType dt;
    if (cls == H5T_FLOAT) dt = size == 8 ? DType::f64 : DType::f32;
    else if (cls == H5T_INTEGER && size == 1 && sign == H5T_SGN_NONE) dt = DType::u8;
    else if (cls == H5T_INTEGER) dt = DType::i32;
    else throw Error(str_cat("HDF5 file ", path, ": dataset '", name, "' is neither float nor integer"));
    Shape shape(dims.begin(), dims.end());
    out = Tensor::empty(shape, dt);
    if (out.numel() > 0)
      check_status(H5Dread(ds, mem_type(dt), H5S_ALL, H5S_ALL, H5P_DEFAULT, out.raw_data()), "H5Dread", path);
  } catch (...) {
    H5Dclose(ds);
    H5Fclose(file);
    throw;
  }
  H5Dclose(ds);
  H5Fclose(file);
  return out;
}

Writer::Writer(const std::string& path) : path_(path), tmp_(path + ".tmp") {
  file_ = H5Fcreate(tmp_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  COCA_CHECK(file_ >= 0, "HDF5: cannot create ", tmp_);
}

Writer::~Writer() {
  if (file_ >= 0) {
    H5Fclose(file_);
    std::remove(tmp_.c_str());
  }
}

void Writer::write(const std::string& name, const Tensor& t) {
  COCA_CHECK(file_ >= 0, "HDF5: write after close of ", path_);
  Tensor c = t.detach().contiguous();
  std::vector<hsize_t> dims(c.shape().begin(), c.shape().end());
  hid_t space = check(dims.empty() ? H5Screate(H5S_SCALAR) : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
                      "H5Screate", path_);
  const hid_t type = mem_type(c.dtype());
  hid_t ds = H5Dcreate2(file_, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Sclose(space);
  COCA_CHECK(ds >= 0, "HDF5: cannot create dataset '", name, "' in ", tmp_);
  const herr_t st = c.numel() > 0 ? H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, c.raw_data()) : 0;
  H5Dclose(ds);
  check_status(st, "H5Dwrite", tmp_);
}

void Writer::close() {
  if (file_ < 0) return;
  const herr_t st = H5Fclose(file_);
  file_ = -1;
  check_status(st, "H5Fclose", tmp_);
  std::error_code ec;
  std::filesystem::rename(tmp_, path_, ec);
  COCA_CHECK(!ec, "cannot rename ", tmp_, " to ", path_, ": ", ec.message());
}

}  // namespace coca::h5
