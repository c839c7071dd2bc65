// unpickle() on raw bytes: the opcodes of data.pkl without the zip around them (which the
// checkpoint harness must get through first, CRC included).
#include "../../src/tensor/pickle.h"
#include "fuzz_common.h"

using namespace coca;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<char> bytes(data, data + size);
  fuzz::expect_errors([&] { (void)unpickle(bytes, "fuzz data.pkl: "); });
  return 0;
}
