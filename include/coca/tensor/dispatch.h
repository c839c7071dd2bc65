#pragma once
// Runs a generic lambda with the C++ type that matches a runtime dtype:
//   dispatch_float(t.dtype(), "matmul", [&](auto tag) { using T = typename decltype(tag)::type; ... });
#include "coca/tensor/dtype.h"
#include "coca/tensor/error.h"

namespace coca {

template <typename T> struct type_tag { using type = T; };

template <typename F>
decltype(auto) dispatch_float(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: return f(type_tag<float>{});
    case DType::f64: return f(type_tag<double>{});
    default: throw Error(str_cat(op, ": dtype ", dtype_name(t), " is not supported (float32 and float64 are)"));
  }
}

template <typename F>
decltype(auto) dispatch_all(DType t, F&& f) {
  switch (t) {
    case DType::f32: return f(type_tag<float>{});
    case DType::f64: return f(type_tag<double>{});
    case DType::bf16: return f(type_tag<bf16>{});
    case DType::i32: return f(type_tag<int32_t>{});
    case DType::u8: return f(type_tag<uint8_t>{});
  }
  throw Error("unknown dtype");
}

template <typename T> inline double to_double(T v) { return static_cast<double>(v); }
template <> inline double to_double<bf16>(bf16 v) { return static_cast<float>(v); }
template <typename T> inline T from_double(double v) { return static_cast<T>(v); }
template <> inline bf16 from_double<bf16>(double v) { return bf16::from_bits(bf16::from_double(v)); }

}  // namespace coca
