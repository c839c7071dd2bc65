#pragma once
// Checks shared by the op implementations: every failure names the op and the operands.
#include "coca/autograd/ops.h"
#include "coca/kernels/cuda/runtime.h"

namespace coca::detail {

inline void check_defined(const char* op, const Tensor& t, const char* what) {
  COCA_CHECK(t.defined(), op, ": ", what, " is undefined");
}

// Every defined operand on one device (CUDA operands need a CUDA build).
inline void check_cpu(const char* op, std::initializer_list<const Tensor*> ts) {
  const Tensor* first = nullptr;
  for (const Tensor* t : ts) {
    if (!t->defined()) continue;
    COCA_CHECK(t->device() == Device::CPU || cuda::built_with_cuda(), op, ": ", t->describe(),
               " is on CUDA, but this build has no CUDA backend");
    if (!first) first = t;
    COCA_CHECK(t->device() == first->device(), op, ": device mismatch between ", first->describe(), " and ",
               t->describe());
  }
}

// Runs the CUDA kernel for CUDA tensors, else the CPU kernel (CUDA builds only reach the first).
#ifdef COCA_WITH_CUDA
#define COCA_DISPATCH_DEVICE(t, call) \
  do {                                \
    if ((t).device() == Device::CUDA) \
      cuda::call;                     \
    else                              \
      cpu::call;                      \
  } while (0)
#else
#define COCA_DISPATCH_DEVICE(t, call) cpu::call
#endif

inline void check_same_dtype(const char* op, const Tensor& a, const Tensor& b) {
  COCA_CHECK(a.dtype() == b.dtype(), op, ": dtype mismatch between ", a.describe(), " and ", b.describe());
  COCA_CHECK(a.device() == b.device(), op, ": device mismatch between ", a.describe(), " and ", b.describe());
}

inline void check_float(const char* op, const Tensor& t) {
  COCA_CHECK(t.dtype() == DType::f32 || t.dtype() == DType::f64, op, ": ", t.describe(),
             " is not float32 or float64");
}

}  // namespace coca::detail
