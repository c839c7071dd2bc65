#pragma once
// Cross-backend parity harness (ggml's test-backend-ops, for our ops): run an op forward and
// backward on the CPU and on the GPU from the same random inputs and upstream gradient, and
// compare the output and every input gradient by normalised mean squared error.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "coca/autograd/ops.h"
#include "coca/kernels/cuda/runtime.h"

namespace coca::test {

#define COCA_SKIP_WITHOUT_GPU()                                                                        \
  do {                                                                                                 \
    if (!::coca::cuda::built_with_cuda()) GTEST_SKIP() << "built without the CUDA backend";            \
    if (::coca::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device present: GPU tests skipped"; \
  } while (0)

// sum((a - b)^2) / sum(b^2), both on any device; 0 when both are all zeros.
inline double nmse(const Tensor& a, const Tensor& b) {
  const auto x = a.to_double_vector(), y = b.to_double_vector();
  EXPECT_EQ(x.size(), y.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
    if (std::isnan(x[i]) != std::isnan(y[i])) return INFINITY;
    if (std::isnan(x[i])) continue;
    num += (x[i] - y[i]) * (x[i] - y[i]);
    den += y[i] * y[i];
  }
  if (den == 0) return num == 0 ? 0 : INFINITY;
  return num / den;
}

struct ParityResult {
  double forward = 0;
  std::vector<double> grads;  // one per input that requires grad
};

// `inputs` live on the CPU; floating ones listed in `with_grad` get gradients.
inline ParityResult run_parity(const std::vector<Tensor>& inputs, const std::vector<bool>& with_grad,
                               const std::function<Tensor(const std::vector<Tensor>&)>& op, uint64_t seed = 987654321) {  // unlike any input seed: an upstream equal to the input is degenerate
  std::vector<Tensor> cpu_in, gpu_in;
  for (size_t i = 0; i < inputs.size(); ++i) {
    Tensor c = inputs[i].defined() ? inputs[i].detach().clone() : Tensor();
    Tensor g = inputs[i].defined() ? inputs[i].detach().to(Device::CUDA) : Tensor();
    if (with_grad[i]) {
      c.set_requires_grad(true);
      g.set_requires_grad(true);
    }
    cpu_in.push_back(c);
    gpu_in.push_back(g);
  }
  Tensor out_cpu = op(cpu_in);
  Tensor out_gpu = op(gpu_in);
  EXPECT_EQ(out_gpu.device(), Device::CUDA);
  ParityResult r;
  r.forward = nmse(out_gpu, out_cpu);
  if (out_cpu.requires_grad()) {
    Generator gen(seed);
    Tensor upstream = Tensor::randn(out_cpu.shape(), gen, out_cpu.dtype());
    out_cpu.backward(upstream);
    out_gpu.backward(upstream.to(Device::CUDA));
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (!with_grad[i]) continue;
      EXPECT_TRUE(cpu_in[i].grad().defined() && gpu_in[i].grad().defined()) << "input " << i << " has no gradient";
      if (!cpu_in[i].grad().defined() || !gpu_in[i].grad().defined()) continue;
      EXPECT_EQ(gpu_in[i].grad().device(), Device::CUDA);
      r.grads.push_back(nmse(gpu_in[i].grad(), cpu_in[i].grad()));
    }
  }
  return r;
}

inline void expect_parity(const std::string& name, const ParityResult& r, double tol) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2e", r.forward);
  std::string line = "[parity] " + name + " forward nmse=" + buf;
  bool ok = r.forward <= tol;
  EXPECT_LE(r.forward, tol) << name << " forward";
  for (size_t i = 0; i < r.grads.size(); ++i) {
    std::snprintf(buf, sizeof buf, "%.2e", r.grads[i]);
    line += " grad" + std::to_string(i) + "=" + buf;
    ok = ok && r.grads[i] <= tol;
    EXPECT_LE(r.grads[i], tol) << name << " gradient of input " << i;
  }
  std::printf("%s tol=%.0e %s\n", line.c_str(), tol, ok ? "ok" : "FAIL");
  std::fflush(stdout);
}

}  // namespace coca::test
