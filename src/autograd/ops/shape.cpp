// concat and split.
#include "common.h"

namespace coca {

Tensor concat(const std::vector<Tensor>& parts, int64_t dim) {
  COCA_CHECK(!parts.empty(), "concat: no tensors given");
  const Tensor& first = parts[0];
  detail::check_defined("concat", first, "first part");
  dim = wrap_dim(dim, first, "concat");
  Shape out_shape = first.shape();
  out_shape[dim] = 0;
  for (const Tensor& p : parts) {
    detail::check_defined("concat", p, "a part");
    detail::check_same_dtype("concat", first, p);
    bool ok = p.dim() == first.dim();
    for (int64_t d = 0; ok && d < first.dim(); ++d)
      if (d != dim && p.shape()[d] != first.shape()[d]) ok = false;
    COCA_CHECK(ok, "concat: ", p.describe(), " does not match ", first.describe(), " outside dimension ", dim);
    out_shape[dim] += p.shape()[dim];
  }
  Tensor out = Tensor::empty(out_shape, first.dtype(), first.device());
  std::vector<int64_t> sizes;
  int64_t at = 0;
  for (const Tensor& p : parts) {
    Tensor window = out.slice(dim, at, at + p.shape()[dim]);
    window.copy_(p);
    at += p.shape()[dim];
    sizes.push_back(p.shape()[dim]);
  }
  record(out, "concat", parts, [sizes, dim](const Tensor& g) {
    std::vector<Tensor> grads;
    int64_t start = 0;
    for (int64_t s : sizes) {
      grads.push_back(g.slice(dim, start, start + s));
      start += s;
    }
    return grads;
  });
  return out;
}

std::vector<Tensor> split(const Tensor& a, const std::vector<int64_t>& sizes, int64_t dim) {
  detail::check_defined("split", a, "input");
  dim = wrap_dim(dim, a, "split");
  int64_t total = 0;
  for (auto s : sizes) {
    COCA_CHECK(s >= 0, "split: negative size ", s);
    total += s;
  }
  COCA_CHECK(total == a.shape()[dim], "split: sizes add up to ", total, " but dimension ", dim, " of ", a.describe(),
             " is ", a.shape()[dim]);
  std::vector<Tensor> out;
  int64_t start = 0;
  for (auto s : sizes) {
    out.push_back(a.slice(dim, start, start + s));
    start += s;
  }
  return out;
}

}  // namespace coca
