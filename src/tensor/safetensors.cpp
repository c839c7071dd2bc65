#include "coca/tensor/safetensors.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

namespace coca {

namespace {

const char* st_dtype(DType t) {
  switch (t) {
    case DType::f32: return "F32";
    case DType::f64: return "F64";
    case DType::bf16: return "BF16";
    case DType::i32: return "I32";
    case DType::u8: return "U8";
  }
  return "?";
}

// A tensor's shape from the header: non-negative integers whose product (of the non-zero ones,
// which also bounds every stride) fits an int64, so that no size computed from it can overflow.
Shape checked_shape(const nlohmann::json& shape, const std::string& path, const std::string& name) {
  bool ok = shape.is_array();
  Shape out;
  uint64_t product = 1;
  for (size_t d = 0; ok && d < shape.size(); ++d) {
    ok = shape[d].is_number_unsigned();
    const uint64_t n = ok ? shape[d].get<uint64_t>() : 0;
    if (n > 0) {
      ok = ok && product <= static_cast<uint64_t>(INT64_MAX) / n;
      product *= ok ? n : 1;
    }
    out.push_back(static_cast<int64_t>(n));
  }
  COCA_CHECK(ok, "safetensors ", path, ": tensor '", name, "' has shape ", shape.dump(),
             ", not a list of non-negative integers whose product fits 63 bits");
  return out;
}

}  // namespace

float half_to_float(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while (!(mant & 0x400)) {
        mant <<= 1;
        --exp;
      }
      bits = sign | (exp << 23) | ((mant & 0x3ff) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  size_t offset = 0;
  std::vector<Tensor> contiguous;
  for (const auto& [name, t] : tensors) {
    COCA_CHECK(t.defined(), "save_safetensors ", path, ": tensor '", name, "' is undefined");
    COCA_CHECK(!header.contains(name), "save_safetensors ", path, ": duplicate tensor name '", name, "'");
    Tensor c = t.detach().to(Device::CPU).contiguous();  // device tensors are copied to the host
    const size_t bytes = c.numel() * dtype_size(c.dtype());
    header[name] = {{"dtype", st_dtype(c.dtype())}, {"shape", c.shape()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    contiguous.push_back(c);
  }
  std::string h = header.dump();
  while (h.size() % 8) h.push_back(' ');
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    COCA_CHECK(out.good(), "save_safetensors: cannot open ", tmp, " for writing");
    uint64_t n = h.size();
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>((n >> (8 * i)) & 0xff);
    out.write(reinterpret_cast<const char*>(len), 8);
    out.write(h.data(), static_cast<std::streamsize>(h.size()));
    for (const Tensor& c : contiguous)
      out.write(static_cast<const char*>(c.raw_data()), static_cast<std::streamsize>(c.numel() * dtype_size(c.dtype())));
    out.flush();
    COCA_CHECK(out.good(), "save_safetensors: write to ", tmp, " failed (disk full?)");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  COCA_CHECK(!ec, "save_safetensors: cannot rename ", tmp, " to ", path, ": ", ec.message());
}

NamedTensors load_safetensors(const std::string& path, std::map<std::string, std::string>* metadata) {
  std::ifstream in(path, std::ios::binary);
  COCA_CHECK(in.good(), "safetensors ", path, ": cannot open file");
  in.seekg(0, std::ios::end);
  const uint64_t file_size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  COCA_CHECK(file_size >= 8, "safetensors ", path, ": file is ", file_size, " bytes, too short for a header");
  unsigned char len[8];
  in.read(reinterpret_cast<char*>(len), 8);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(len[i]) << (8 * i);
  COCA_CHECK(n <= file_size - 8 && n < (1ull << 31), "safetensors ", path, ": header length ", n,
             " exceeds the file (", file_size, " bytes)");
  std::string h(n, '\0');
  in.read(h.data(), static_cast<std::streamsize>(n));
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(h);
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for a number like 1e999
    throw Error(str_cat("safetensors ", path, ": header is not valid JSON: ", e.what()));
  }
  COCA_CHECK(header.is_object(), "safetensors ", path, ": header is not a JSON object");
  const uint64_t data_start = 8 + n, data_size = file_size - data_start;
  struct Entry {
    std::string name, dtype;
    Shape shape;
    uint64_t begin, end;
  };
  std::vector<Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (metadata && it.value().is_object())
        for (auto m = it.value().begin(); m != it.value().end(); ++m)
          (*metadata)[m.key()] = m.value().is_string() ? m.value().get<std::string>() : m.value().dump();
      continue;
    }
    const auto& v = it.value();
    COCA_CHECK(v.is_object() && v.contains("dtype") && v.contains("shape") && v.contains("data_offsets"),
               "safetensors ", path, ": entry '", it.key(), "' lacks dtype, shape or data_offsets");
    const auto &dtype = v.at("dtype"), &shape = v.at("shape"), &offsets = v.at("data_offsets");
    COCA_CHECK(dtype.is_string(), "safetensors ", path, ": tensor '", it.key(), "' has dtype ", dtype.dump(),
               ", not a string");
    COCA_CHECK(offsets.is_array() && offsets.size() == 2 && offsets[0].is_number_unsigned() &&
                   offsets[1].is_number_unsigned(),
               "safetensors ", path, ": tensor '", it.key(), "' has data_offsets ", offsets.dump(), ", not [begin, end]");
    Entry e{it.key(), dtype.get<std::string>(), checked_shape(shape, path, it.key()), offsets[0].get<uint64_t>(),
            offsets[1].get<uint64_t>()};
    COCA_CHECK(e.begin <= e.end && e.end <= data_size, "safetensors ", path, ": tensor '", e.name,
               "' data [", e.begin, ", ", e.end, ") lies outside the ", data_size, " data bytes (truncated file?)");
    entries.push_back(std::move(e));
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.begin < b.begin; });
  NamedTensors out;
  for (const Entry& e : entries) {
    const int64_t count = shape_numel(e.shape);
    size_t elem;
    if (e.dtype == "F32" || e.dtype == "I32") elem = 4;
    else if (e.dtype == "F64") elem = 8;
    else if (e.dtype == "BF16" || e.dtype == "F16") elem = 2;
    else if (e.dtype == "U8") elem = 1;
    else throw Error(str_cat("safetensors ", path, ": tensor '", e.name, "' has unsupported dtype ", e.dtype));
    // count fits an int64 (checked_shape), so count * elem cannot wrap once count is below the bytes.
    COCA_CHECK(static_cast<uint64_t>(count) <= e.end - e.begin && e.end - e.begin == count * elem, "safetensors ", path,
               ": tensor '", e.name, "' of shape ", shape_str(e.shape), " and dtype ", e.dtype, " needs ", count,
               " elements of ", elem, " bytes, has ", e.end - e.begin, " bytes");
    std::vector<char> raw(e.end - e.begin);
    in.seekg(static_cast<std::streamoff>(data_start + e.begin));
    in.read(raw.data(), static_cast<std::streamsize>(raw.size()));
    COCA_CHECK(in.good(), "safetensors ", path, ": short read of tensor '", e.name, "'");
    Tensor t;
    if (e.dtype == "F16") {
      t = Tensor::empty(e.shape, DType::f32);
      float* p = t.data<float>();
      for (int64_t i = 0; i < count; ++i) {
        uint16_t hbits;
        std::memcpy(&hbits, raw.data() + 2 * i, 2);
        p[i] = half_to_float(hbits);
      }
    } else {
      const DType dt = e.dtype == "F32" ? DType::f32 : e.dtype == "F64" ? DType::f64 : e.dtype == "BF16" ? DType::bf16
                     : e.dtype == "I32" ? DType::i32 : DType::u8;
      t = Tensor::empty(e.shape, dt);
      if (!raw.empty()) std::memcpy(t.raw_data(), raw.data(), raw.size());
      if (dt == DType::bf16) t = t.to(DType::f32);
    }
    out.emplace_back(e.name, t);
  }
  return out;
}

}  // namespace coca
