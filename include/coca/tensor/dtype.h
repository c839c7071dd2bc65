#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

namespace coca {

enum class DType : uint8_t { f32, f64, bf16, i32, u8 };
enum class Device : uint8_t { CPU, CUDA };

size_t dtype_size(DType t);
const char* dtype_name(DType t);
const char* device_name(Device d);
inline bool is_floating(DType t) { return t == DType::f32 || t == DType::f64 || t == DType::bf16; }

// bfloat16 storage type: the upper 16 bits of an IEEE float32. Conversion rounds to nearest
// even (NaN stays NaN); arithmetic on bf16 always goes through float32.
struct bf16 {
  uint16_t bits = 0;
  bf16() = default;
  explicit bf16(float f) { bits = from_float(f); }
  static bf16 from_bits(uint16_t b) {
    bf16 v;
    v.bits = b;
    return v;
  }
  explicit operator float() const { return to_float(bits); }
  static uint16_t from_float(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
    uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
    return static_cast<uint16_t>((u + rounding) >> 16);
  }
  // A double rounded once, straight to bf16. Going through float would round twice:
  // 1 + 2^-8 + 2^-30 becomes the tie 1 + 2^-8 in float, then 1.0 instead of 1 + 2^-7.
  static uint16_t from_double(double d) {
    float f = static_cast<float>(d);
    if (!std::isnan(d) && std::isfinite(f) && static_cast<double>(f) != d) {
      // Round to odd (truncate, then set the sticky bit): float keeps 16 more bits than bf16,
      // so the float -> bf16 rounding then sees on which side of a tie d was.
      if (std::fabs(static_cast<double>(f)) > std::fabs(d)) f = std::nextafter(f, 0.0f);
      uint32_t u;
      std::memcpy(&u, &f, 4);
      u |= 1u;
      std::memcpy(&f, &u, 4);
    }
    return from_float(f);
  }
  static float to_float(uint16_t b) {
    uint32_t u = static_cast<uint32_t>(b) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};

template <typename T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::f32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::f64; };
template <> struct dtype_of<bf16> { static constexpr DType value = DType::bf16; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::i32; };
template <> struct dtype_of<uint8_t> { static constexpr DType value = DType::u8; };

}  // namespace coca
