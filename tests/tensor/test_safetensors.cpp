// safetensors reading: malformed headers are one coca::Error naming the file and the tensor, never
// a JSON library exception or an out-of-bounds read (cases found by tests/fuzz/fuzz_safetensors).
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "coca/tensor/safetensors.h"

using namespace coca;

namespace {

// A file of an 8-byte length, `header` and `data_bytes` zero bytes.
std::string write_file(const std::string& header, size_t data_bytes) {
  const std::string path = (std::filesystem::temp_directory_path() / "coca_malformed.safetensors").string();
  std::ofstream out(path, std::ios::binary);
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xff));
  out << header << std::string(data_bytes, '\0');
  return path;
}

void expect_error(const std::string& header, const std::string& message) {
  const std::string path = write_file(header, 16);
  try {
    load_safetensors(path);
    ADD_FAILURE() << "no error for " << header;
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("safetensors " + path + ": "), std::string::npos) << what;
    EXPECT_NE(what.find(message), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
}

}  // namespace

TEST(Safetensors, MalformedEntriesAreNamed) {
  expect_error(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[5]}})", "tensor 'w' has data_offsets [5], not [begin, end]");
  expect_error(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":"0,8"}})", "tensor 'w' has data_offsets");
  expect_error(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[-1,7]}})", "tensor 'w' has data_offsets");
  expect_error(R"({"w":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})", "tensor 'w' has dtype 4, not a string");
  expect_error(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", "tensor 'w' has shape [-2]");
  expect_error(R"({"w":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})", "tensor 'w' has shape \"2\"");
  // Element counts that would overflow: refused before anything is multiplied or allocated.
  expect_error(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})",
               "product fits 63 bits");
  expect_error(R"({"w":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,16]}})",
               "needs 2305843009213693952 elements of 8 bytes, has 16 bytes");
  expect_error(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,1e999]}})", "header is not valid JSON");
}

TEST(Safetensors, ZeroSizedDimensionsRead) {
  const std::string path = write_file(R"({"w":{"dtype":"F32","shape":[0,4611686018427387904],"data_offsets":[0,0]}})", 0);
  const NamedTensors t = load_safetensors(path);
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].second.numel(), 0);
}
