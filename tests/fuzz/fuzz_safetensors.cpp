// safetensors files through load_safetensors; what loads must save and load again to the same
// names, shapes and bytes.
#include <cstring>

#include "coca/tensor/safetensors.h"
#include "fuzz_common.h"

using namespace coca;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::MemFile file("weights.safetensors");
  const std::string& path = file.write(data, size);
  std::map<std::string, std::string> metadata;
  NamedTensors tensors;
  if (!fuzz::expect_errors([&] { tensors = load_safetensors(path, &metadata); })) return 0;
  size_t bytes = 0;
  for (const auto& [name, t] : tensors) bytes += t.numel() * dtype_size(t.dtype());
  if (bytes > (1u << 20)) return 0;  // the round trip writes to disk: keep it to small files
  const std::string again = (fuzz::scratch_dir() / "roundtrip.safetensors").string();
  save_safetensors(again, tensors, metadata);  // must not throw: these tensors came from a file
  std::map<std::string, std::string> metadata2;
  const NamedTensors reread = load_safetensors(again, &metadata2);
  FUZZ_ASSERT(metadata2 == metadata);
  FUZZ_ASSERT(reread.size() == tensors.size());
  std::map<std::string, const Tensor*> by_name;
  for (const auto& [name, t] : reread) by_name[name] = &t;
  for (const auto& [name, a] : tensors) {
    FUZZ_ASSERT(by_name.count(name));
    const Tensor& b = *by_name[name];
    FUZZ_ASSERT(a.shape() == b.shape() && a.dtype() == b.dtype());
    FUZZ_ASSERT(a.numel() == 0 || std::memcmp(a.raw_data(), b.raw_data(), a.numel() * dtype_size(a.dtype())) == 0);
  }
  return 0;
}
