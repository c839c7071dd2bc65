// The parsers build tensors (tensor.cpp, views.cpp) but none that requires a gradient, so every
// op they run records nothing: these stand in for the autograd engine, which would pull the CPU
// kernels, BLAS and OpenMP into the fuzz build. A gradient reached from a harness is a finding.
#include <cstdio>
#include <cstdlib>

#include "coca/autograd/node.h"
#include "coca/autograd/ops.h"

namespace coca {

namespace {
[[noreturn]] void unexpected(const char* what) {
  std::fprintf(stderr, "fuzz: %s reached from a parser (autograd is not built into the fuzz harnesses)\n", what);
  std::abort();
}
}  // namespace

// As engine.cpp's record: nothing to do unless an input requires a gradient.
void record(Tensor&, const char*, const std::vector<Tensor>& inputs, BackwardFn) {
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) unexpected("autograd record");
}
void run_backward(const Tensor&, const Tensor&) { unexpected("autograd backward"); }
Tensor sum_to_shape(const Tensor&, const Shape&) { unexpected("sum_to_shape"); }

}  // namespace coca
