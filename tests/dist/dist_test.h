#pragma once
// Shared by the MPI test binaries: the world communicator (set up by dist_test_main.cpp) and the
// per-tensor relative error used by every comparison.
#include <algorithm>
#include <cmath>
#include <memory>

#include "coca/dist/mpi.h"

namespace coca::test {

extern std::shared_ptr<dist::MpiCommunicator> g_world;

// max |a - b| / max |b| (0 when both are exactly zero).
inline double rel_err(const Tensor& a, const Tensor& b) {
  auto x = a.to_double_vector(), y = b.to_double_vector();
  if (x.size() != y.size()) return INFINITY;
  double diff = 0, scale = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    diff = std::max(diff, std::abs(x[i] - y[i]));
    scale = std::max(scale, std::abs(y[i]));
  }
  return diff == 0 ? 0 : diff / std::max(scale, 1e-300);
}

inline double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.to_double_vector()) m = std::max(m, std::abs(v));
  return m;
}

}  // namespace coca::test
