// set_shard_token SHARD ROW COL ID: overwrites one token id of a shard's `tokens` dataset in
// place. The write goes through HDF5, so the chunk's Fletcher32 checksum is recomputed: the
// file stays intact and only the id is wrong (as a shard made with another tokenizer would be).
// For tests/faults/data.sh; h5py would do the same, but is not installed everywhere.
#include <hdf5.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace {

int fail(const char* what, const char* path) {
  std::fprintf(stderr, "set_shard_token: %s failed for %s\n", what, path);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: set_shard_token SHARD ROW COL ID\n");
    return 2;
  }
  const char* path = argv[1];
  hsize_t start[2] = {std::strtoull(argv[2], nullptr, 10), std::strtoull(argv[3], nullptr, 10)};
  hsize_t count[2] = {1, 1};
  const int32_t id = static_cast<int32_t>(std::strtol(argv[4], nullptr, 10));
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  const hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  if (file < 0) return fail("H5Fopen", path);
  const hid_t dset = H5Dopen2(file, "tokens", H5P_DEFAULT);
  if (dset < 0) return fail("H5Dopen2(tokens)", path);
  const hid_t fspace = H5Dget_space(dset);
  hsize_t dims[2] = {0, 0};
  if (fspace < 0 || H5Sget_simple_extent_ndims(fspace) != 2 || H5Sget_simple_extent_dims(fspace, dims, nullptr) < 0)
    return fail("tokens [N, L] shape", path);
  if (start[0] >= dims[0] || start[1] >= dims[1]) return fail("row/column range", path);
  const hid_t mspace = H5Screate_simple(2, count, nullptr);
  if (H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, nullptr, count, nullptr) < 0)
    return fail("H5Sselect_hyperslab", path);
  if (H5Dwrite(dset, H5T_NATIVE_INT32, mspace, fspace, H5P_DEFAULT, &id) < 0) return fail("H5Dwrite", path);
  H5Sclose(mspace);
  H5Sclose(fspace);
  H5Dclose(dset);
  if (H5Fclose(file) < 0) return fail("H5Fclose", path);
  return 0;
}
