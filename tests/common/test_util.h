#pragma once
// Helpers shared by the op tests: random inputs, index arithmetic for the plain-loop
// references (which work on logical row-major double vectors), and a comparison that reports
// the worst element instead of the first.
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "coca/autograd/ops.h"
#include "gradcheck.h"

namespace coca::testing {

// The message of the coca::Error that `f` throws, or "(no error)".
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Forward tolerance of a kernel result against a float64 reference: |got - want| <= tol *
// (1 + |want|). float32 kernels accumulate in float32, so the bound allows ~100 ulps.
template <typename T> constexpr double fwd_tol() { return std::is_same_v<T, float> ? 2e-5 : 1e-11; }

// Uniform in [lo, hi): never all zeros, and the sign mix exercises every branch of max/clamp.
inline Tensor uniform(const Shape& s, DType dt, Generator& gen, double lo = -1.0, double hi = 1.0) {
  return Tensor::rand(s, gen, dt, lo, hi);
}

inline int64_t ravel(const Shape& idx, const Shape& shape) {
  int64_t flat = 0;
  for (size_t d = 0; d < shape.size(); ++d) flat = flat * shape[d] + idx[d];
  return flat;
}

// Logical position in a tensor of shape `src` (right-aligned, size-1 dims broadcast) that the
// output multi-index `out_idx` reads.
inline int64_t broadcast_source(const Shape& out_idx, const Shape& src) {
  const size_t lead = out_idx.size() - src.size();
  int64_t flat = 0;
  for (size_t d = 0; d < src.size(); ++d) flat = flat * src[d] + (src[d] == 1 ? 0 : out_idx[d + lead]);
  return flat;
}

inline ::testing::AssertionResult all_close(const Tensor& got, const Shape& want_shape,
                                            const std::vector<double>& want, double tol) {
  if (got.shape() != want_shape)
    return ::testing::AssertionFailure() << "shape " << shape_str(got.shape()) << ", expected "
                                         << shape_str(want_shape);
  if (static_cast<int64_t>(want.size()) != got.numel())
    return ::testing::AssertionFailure() << "reference has " << want.size() << " values for " << got.describe();
  const std::vector<double> g = got.to_double_vector();
  double worst = 0;
  int64_t at = -1;
  for (size_t i = 0; i < g.size(); ++i) {
    const double err = std::fabs(g[i] - want[i]) / (1.0 + std::fabs(want[i]));
    if (!(err <= worst) || std::isnan(g[i]) != std::isnan(want[i])) {
      worst = std::isnan(err) ? 1e300 : err;
      at = static_cast<int64_t>(i);
    }
  }
  if (at >= 0 && worst > tol)
    return ::testing::AssertionFailure() << got.describe() << " differs at " << shape_str(unravel_index(at, want_shape))
                                         << ": got " << g[at] << ", expected " << want[at] << " (relative error "
                                         << worst << " > " << tol << ")";
  return ::testing::AssertionSuccess();
}

// Bitwise / exact equality of two tensors' logical values.
inline ::testing::AssertionResult all_equal(const Tensor& got, const Tensor& want) {
  return all_close(got, want.shape(), want.to_double_vector(), 0.0);
}

// Runs `body` under the message "<what>" so that a failure inside a loop names its case.
#define COCA_CASE(what) SCOPED_TRACE(::testing::Message() << what)

}  // namespace coca::testing
