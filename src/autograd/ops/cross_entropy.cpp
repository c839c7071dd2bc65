// Fused cross-entropy with an ignore index: keeps one [N] log-sum-exp buffer for backward.
#include "coca/kernels/cpu/cross_entropy.h"
#ifdef COCA_WITH_CUDA
#include "coca/kernels/cuda/cross_entropy.h"
#include "coca/kernels/cuda/embedding.h"
#endif

#include "common.h"

namespace coca {

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index, double normalizer) {
  detail::check_defined("cross_entropy", logits, "logits");
  detail::check_defined("cross_entropy", targets, "targets");
  detail::check_cpu("cross_entropy", {&logits, &targets});
  detail::check_float("cross_entropy", logits);
  COCA_CHECK(logits.dim() == 2, "cross_entropy: logits ", logits.describe(), " must be [N, C]");
  COCA_CHECK(targets.dtype() == DType::i32 && targets.dim() == 1 && targets.size(0) == logits.size(0),
             "cross_entropy: targets ", targets.describe(), " must be i32 [N] for logits ", logits.describe());
  COCA_CHECK(logits.size(1) > 0, "cross_entropy: logits ", logits.describe(), " have no classes");
  // Rows may be strided (e.g. a slice of a larger buffer); the class dim must be contiguous.
  Tensor x = logits.detach();
  if (x.stride(1) != 1 && x.size(1) > 1) x = x.contiguous();
  const int64_t ld = x.size(0) > 1 ? x.stride(0) : x.size(1);
  Tensor t = targets.contiguous();
  Tensor lse = Tensor::empty({x.size(0)}, x.dtype(), x.device());
#ifdef COCA_WITH_CUDA
  if (x.device() == Device::CUDA) {  // the loss and its denominator stay on the device
    Tensor out = Tensor::empty({}, x.dtype(), Device::CUDA), denom = Tensor::empty({1}, DType::f64, Device::CUDA);
    cuda::cross_entropy_forward(x, ld, t, ignore_index, lse, normalizer, out, denom);
    record(out, "cross_entropy", {logits}, [x, ld, t, lse, ignore_index, denom](const Tensor& g) {
      Tensor d = Tensor::empty(x.shape(), x.dtype(), x.device());
      cuda::cross_entropy_backward(x, ld, t, ignore_index, lse, g.to(x.dtype()).contiguous(), denom, d);
      return std::vector<Tensor>{d};
    });
    return out;
  }
#endif
  int64_t count = 0;
  const double total = cpu::cross_entropy_forward(x, ld, t, ignore_index, lse, count);
  const double denom = normalizer > 0 ? normalizer : static_cast<double>(count);
  // With every target ignored the mean is 0 (not NaN) and so is the gradient.
  const double value = denom > 0 ? total / denom : 0.0;
  Tensor out = Tensor::scalar(value, logits.dtype(), logits.device());
  record(out, "cross_entropy", {logits}, [x, ld, t, lse, ignore_index, denom](const Tensor& g) {
    Tensor d = Tensor::empty(x.shape(), x.dtype(), x.device());
    const double scale = denom > 0 ? g.item() / denom : 0.0;
    cpu::cross_entropy_backward(x, ld, t, ignore_index, lse, scale, d);
    return std::vector<Tensor>{d};
  });
  return out;
}

void check_deferred_errors() {
#ifdef COCA_WITH_CUDA
  cuda::check_targets();
  cuda::check_indices();
#endif
}

}  // namespace coca
