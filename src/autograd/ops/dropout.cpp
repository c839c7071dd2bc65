// Inverted dropout with a seeded mask: kept elements are scaled by 1/(1-p).
#include "common.h"
#include "coca/tensor/dispatch.h"

namespace coca {

Tensor dropout(const Tensor& a, double p, Generator& gen, bool training) {
  detail::check_defined("dropout", a, "input");
  COCA_CHECK(p >= 0.0 && p < 1.0, "dropout: probability ", p, " is outside [0, 1)");
  if (!training || p == 0.0) return a;
  detail::check_float("dropout", a);
  Tensor mask = Tensor::empty(a.shape(), a.dtype());  // drawn on the host: the same mask on every device
  dispatch_float(a.dtype(), "dropout", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* m = mask.data<T>();
    const T keep = static_cast<T>(1.0 / (1.0 - p));
    for (int64_t i = 0; i < mask.numel(); ++i) m[i] = gen.uniform() < p ? T(0) : keep;
  });
  return mul(a, mask.to(a.device()));
}

}  // namespace coca
