#pragma once
// safetensors files: an 8-byte little-endian header length, a JSON header mapping each name to
// {dtype, shape, data_offsets}, then the raw little-endian bytes. We write F32 (or F64/I32/U8
// as the tensors are); we read F32, F64, BF16, F16, I32, U8 (BF16/F16 widen to f32).
#include <map>
#include <string>
#include <vector>

#include "coca/tensor/tensor.h"

namespace coca {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Written to `path`.tmp then renamed, so a crash never leaves a half-written file at `path`.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});
// Every tensor in the file, in file order. Throws naming the file on any structural problem.
NamedTensors load_safetensors(const std::string& path, std::map<std::string, std::string>* metadata = nullptr);

// IEEE binary16 bits to float (exact: every half is a float).
float half_to_float(uint16_t h);

}  // namespace coca
