#pragma once
// SHA-256, used to identify a tokenizer file in index.json (same digest as sha256sum).
#include <cstddef>
#include <cstdint>
#include <string>

namespace coca {

std::string sha256_hex(const void* data, size_t size);
std::string sha256_file(const std::string& path);

}  // namespace coca
