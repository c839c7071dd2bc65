#include "coca/data/h5.h"

#include <cstring>

#include "coca/data/lzf.h"

namespace coca::h5 {

std::recursive_mutex& lock() {
  static std::recursive_mutex m;
  return m;
}

void init() {
  static std::once_flag once;
  std::call_once(once, [] {
    std::lock_guard<std::recursive_mutex> g(lock());
    H5open();
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    register_lzf_filter();
  });
}

namespace {
herr_t innermost(unsigned n, const H5E_error2_t* err, void* data) {
  auto* out = static_cast<std::string*>(data);
  if (n == 0 && err->desc) *out = err->desc;
  if (n == 0 && out->empty() && err->func_name) *out = err->func_name;
  return 0;
}
}  // namespace

std::string last_error() {
  std::string msg;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, innermost, &msg);
  H5Eclear2(H5E_DEFAULT);
  return msg;
}

void fail(const std::string& what, const std::string& file) {
  const std::string msg = last_error();
  throw Error(str_cat("HDF5: ", what, " failed for ", file, msg.empty() ? "" : ": ", msg));
}

Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    reset();
    id_ = o.id_;
    kind_ = o.kind_;
    o.id_ = -1;
  }
  return *this;
}

static herr_t close_id(hid_t id, Handle::Kind kind) {
  switch (kind) {
    case Handle::Kind::file: return H5Fclose(id);
    case Handle::Kind::dataset: return H5Dclose(id);
    case Handle::Kind::dataspace: return H5Sclose(id);
    case Handle::Kind::datatype: return H5Tclose(id);
    case Handle::Kind::attribute: return H5Aclose(id);
    case Handle::Kind::plist: return H5Pclose(id);
    case Handle::Kind::group: return H5Gclose(id);
  }
  return -1;
}

void Handle::reset() noexcept {
  if (id_ >= 0) {
    std::lock_guard<std::recursive_mutex> g(lock());
    close_id(id_, kind_);
    H5Eclear2(H5E_DEFAULT);
  }
  id_ = -1;
}

void Handle::close(const std::string& file) {
  if (id_ < 0) return;
  std::lock_guard<std::recursive_mutex> g(lock());
  const hid_t id = id_;
  id_ = -1;
  check(close_id(id, kind_), "close", file);
}

Handle utf8_string_type() {
  Handle t(H5Tcopy(H5T_C_S1), Handle::Kind::datatype);
  check_id(t, "H5Tcopy", "(string type)");
  check(H5Tset_size(t, H5T_VARIABLE), "H5Tset_size", "(string type)");
  check(H5Tset_cset(t, H5T_CSET_UTF8), "H5Tset_cset", "(string type)");
  return t;
}

bool has_attribute(hid_t loc, const char* name) {
  const htri_t r = H5Aexists(loc, name);
  H5Eclear2(H5E_DEFAULT);
  return r > 0;
}

bool has_dataset(hid_t file, const char* name) {
  const htri_t r = H5Lexists(file, name, H5P_DEFAULT);
  H5Eclear2(H5E_DEFAULT);
  return r > 0;
}

void write_attribute(hid_t loc, const char* name, const std::string& value, const std::string& file) {
  Handle type = utf8_string_type();
  Handle space(check_id(H5Screate(H5S_SCALAR), "H5Screate", file), Handle::Kind::dataspace);
  Handle attr(check_id(H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT), "H5Acreate2", file),
              Handle::Kind::attribute);
  const char* p = value.c_str();
  check(H5Awrite(attr, type, &p), "H5Awrite", file);
}

void write_attribute(hid_t loc, const char* name, int64_t value, const std::string& file) {
  Handle space(check_id(H5Screate(H5S_SCALAR), "H5Screate", file), Handle::Kind::dataspace);
  Handle attr(check_id(H5Acreate2(loc, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT), "H5Acreate2", file),
              Handle::Kind::attribute);
  check(H5Awrite(attr, H5T_NATIVE_INT64, &value), "H5Awrite", file);
}

void write_attribute(hid_t loc, const char* name, const std::vector<std::string>& values, const std::string& file) {
  Handle type = utf8_string_type();
  const hsize_t n = values.size();
  Handle space(check_id(H5Screate_simple(1, &n, nullptr), "H5Screate_simple", file), Handle::Kind::dataspace);
  Handle attr(check_id(H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT), "H5Acreate2", file),
              Handle::Kind::attribute);
  std::vector<const char*> ptrs;
  for (const auto& v : values) ptrs.push_back(v.c_str());
  if (n > 0) check(H5Awrite(attr, type, ptrs.data()), "H5Awrite", file);
}

std::string read_string_attribute(hid_t loc, const char* name, const std::string& file) {
  const std::vector<std::string> v = read_string_list_attribute(loc, name, file);
  COCA_CHECK(v.size() == 1, "HDF5: attribute ", name, " of ", file, " is not a single string");
  return v[0];
}

int64_t read_int_attribute(hid_t loc, const char* name, const std::string& file) {
  Handle attr(check_id(H5Aopen(loc, name, H5P_DEFAULT), (std::string("open attribute ") + name).c_str(), file),
              Handle::Kind::attribute);
  int64_t v = 0;
  check(H5Aread(attr, H5T_NATIVE_INT64, &v), "H5Aread", file);
  return v;
}

std::vector<std::string> read_string_list_attribute(hid_t loc, const char* name, const std::string& file) {
  Handle attr(check_id(H5Aopen(loc, name, H5P_DEFAULT), (std::string("open attribute ") + name).c_str(), file),
              Handle::Kind::attribute);
  Handle space(check_id(H5Aget_space(attr), "H5Aget_space", file), Handle::Kind::dataspace);
  const hssize_t n = H5Sget_simple_extent_npoints(space);
  check(static_cast<herr_t>(n < 0 ? -1 : 0), "H5Sget_simple_extent_npoints", file);
  Handle ftype(check_id(H5Aget_type(attr), "H5Aget_type", file), Handle::Kind::datatype);
  std::vector<std::string> out;
  if (H5Tis_variable_str(ftype) > 0) {
    Handle type = utf8_string_type();
    std::vector<char*> ptrs(static_cast<size_t>(n), nullptr);
    check(H5Aread(attr, type, ptrs.data()), "H5Aread", file);
    for (char* p : ptrs) out.emplace_back(p ? p : "");
    H5Dvlen_reclaim(type, space, H5P_DEFAULT, ptrs.data());
  } else {  // fixed-length strings, as other writers may produce
    const size_t len = H5Tget_size(ftype);
    std::vector<char> buf(len * static_cast<size_t>(n) + 1, 0);
    check(H5Aread(attr, ftype, buf.data()), "H5Aread", file);
    for (hssize_t i = 0; i < n; ++i) {
      const char* p = buf.data() + static_cast<size_t>(i) * len;
      out.emplace_back(p, strnlen(p, len));
    }
  }
  return out;
}

std::vector<hsize_t> dataset_dims(hid_t dataset, const std::string& file) {
  Handle space(check_id(H5Dget_space(dataset), "H5Dget_space", file), Handle::Kind::dataspace);
  const int nd = H5Sget_simple_extent_ndims(space);
  check(nd, "H5Sget_simple_extent_ndims", file);
  std::vector<hsize_t> dims(static_cast<size_t>(nd));
  check(H5Sget_simple_extent_dims(space, dims.data(), nullptr), "H5Sget_simple_extent_dims", file);
  return dims;
}

std::vector<std::string> read_strings(hid_t dataset, int64_t start, int64_t count, const std::string& file) {
  std::vector<std::string> out;
  if (count <= 0) return out;
  Handle type = utf8_string_type();
  Handle fspace(check_id(H5Dget_space(dataset), "H5Dget_space", file), Handle::Kind::dataspace);
  const hsize_t off = static_cast<hsize_t>(start), n = static_cast<hsize_t>(count);
  check(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &off, nullptr, &n, nullptr), "H5Sselect_hyperslab", file);
  Handle mspace(check_id(H5Screate_simple(1, &n, nullptr), "H5Screate_simple", file), Handle::Kind::dataspace);
  std::vector<char*> ptrs(n, nullptr);
  check(H5Dread(dataset, type, mspace, fspace, H5P_DEFAULT, ptrs.data()), "read strings", file);
  out.reserve(n);
  for (char* p : ptrs) out.emplace_back(p ? p : "");
  H5Dvlen_reclaim(type, mspace, H5P_DEFAULT, ptrs.data());
  return out;
}

}  // namespace coca::h5
