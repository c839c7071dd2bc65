// Model config JSON (OpenCLIP's schema) through CocaConfig::from_file; a config that loads must
// survive to_json and load again to the same values.
#include "coca/model/config.h"
#include "fuzz_common.h"

using namespace coca;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::silence_cerr();  // unknown keys are warned about on std::cerr
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::MemFile file("model.json");
  CocaConfig c;
  if (!fuzz::expect_errors([&] { c = CocaConfig::from_file(file.write(data, size)); })) return 0;
  const CocaConfig d = CocaConfig::from_json(c.to_json(), "round trip");  // must not throw
  FUZZ_ASSERT(d.to_json() == c.to_json());
  FUZZ_ASSERT(d.vision.heads() > 0 && d.vision.grid() > 0);
  return 0;
}
