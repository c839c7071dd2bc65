// PyTorch zip checkpoints (.bin / .pt) through load_torch_state_dict: the zip reader, data.pkl's
// unpickler and the storage views, from a file as the loader opens them.
#include "coca/tensor/torch_archive.h"
#include "fuzz_common.h"

using namespace coca;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::MemFile file("checkpoint.bin");
  const std::string& path = file.write(data, size);
  (void)is_zip_file(path);
  fuzz::expect_errors([&] {
    const NamedTensors tensors = load_torch_state_dict(path);
    for (const auto& [name, t] : tensors) FUZZ_ASSERT(t.defined());
  });
  return 0;
}
