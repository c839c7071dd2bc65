#pragma once
// LZF compression (the liblzf stream format) and the HDF5 filter h5py registers as id 32000,
// so that `--compression lzf` shards are readable by h5py (and by h5dump only with the LZF
// plugin). Decompression is fast enough that the loader barely notices it.
#include <cstddef>
#include <cstdint>

namespace coca {

constexpr int kLzfFilterId = 32000;

// Returns the compressed size, or 0 when the output would not fit in out_cap.
size_t lzf_compress(const uint8_t* in, size_t n, uint8_t* out, size_t out_cap);
// Returns the decompressed size, or 0 on corrupt input or when out_cap is too small
// (*too_small set in that case).
size_t lzf_decompress(const uint8_t* in, size_t n, uint8_t* out, size_t out_cap, bool* too_small);

// Registers the filter with HDF5 (idempotent; h5::init calls it).
void register_lzf_filter();

}  // namespace coca
