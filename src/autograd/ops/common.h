#pragma once
// Checks shared by the op implementations: every failure names the op and the operands.
#include "coca/autograd/ops.h"

namespace coca::detail {

inline void check_defined(const char* op, const Tensor& t, const char* what) {
  COCA_CHECK(t.defined(), op, ": ", what, " is undefined");
}

inline void check_cpu(const char* op, std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts)
    if (t->defined())
      COCA_CHECK(t->device() == Device::CPU, op, ": ", t->describe(),
                 " is on CUDA, but this op has only a CPU kernel in this build");
}

inline void check_same_dtype(const char* op, const Tensor& a, const Tensor& b) {
  COCA_CHECK(a.dtype() == b.dtype(), op, ": dtype mismatch between ", a.describe(), " and ", b.describe());
  COCA_CHECK(a.device() == b.device(), op, ": device mismatch between ", a.describe(), " and ", b.describe());
}

inline void check_float(const char* op, const Tensor& t) {
  COCA_CHECK(t.dtype() == DType::f32 || t.dtype() == DType::f64, op, ": ", t.describe(),
             " is not float32 or float64");
}

}  // namespace coca::detail
