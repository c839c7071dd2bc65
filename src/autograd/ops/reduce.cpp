// sum / mean / max over dimensions, and sum_to_shape (the adjoint of broadcasting).
#include "coca/kernels/cpu/reduce.h"
#ifdef COCA_WITH_CUDA
#include "coca/kernels/cuda/reduce.h"
#endif

#include <algorithm>

#include "common.h"

namespace coca {

namespace {

std::vector<int64_t> normalise_dims(std::vector<int64_t> dims, const Tensor& a, const char* op) {
  const int64_t ndim = a.dim();
  const Shape requested = dims;
  if (dims.empty()) {
    for (int64_t i = 0; i < ndim; ++i) dims.push_back(i);
    return dims;
  }
  for (auto& d : dims) d = wrap_dim(d, a, op);
  std::sort(dims.begin(), dims.end());
  COCA_CHECK(std::adjacent_find(dims.begin(), dims.end()) == dims.end(), op, ": repeated dimension in ",
             shape_str(requested), " for ", a.describe());
  return dims;
}

Shape reduced_shape(const Shape& s, const std::vector<int64_t>& dims, bool keepdim) {
  Shape out;
  for (int64_t i = 0; i < static_cast<int64_t>(s.size()); ++i) {
    const bool reduced = std::binary_search(dims.begin(), dims.end(), i);
    if (!reduced) out.push_back(s[i]);
    else if (keepdim) out.push_back(1);
  }
  return out;
}

// Sum without autograd: returns the keepdim=false shape.
Tensor sum_forward(const Tensor& a, const std::vector<int64_t>& dims) {
  const int64_t nd = a.dim();
  Shape out_shape = reduced_shape(a.shape(), dims, false);
  Tensor out = Tensor::empty(out_shape, a.dtype(), a.device());
  if (a.numel() == 0) {
    out.fill_(0);
    return out;
  }
  const bool block = !dims.empty() && dims.back() - dims.front() + 1 == static_cast<int64_t>(dims.size());
  if (block && a.is_contiguous()) {
    int64_t outer = 1, red = 1, inner = 1;
    for (int64_t i = 0; i < nd; ++i) {
      if (i < dims.front()) outer *= a.shape()[i];
      else if (i <= dims.back()) red *= a.shape()[i];
      else inner *= a.shape()[i];
    }
    COCA_DISPATCH_DEVICE(a, sum_middle(a, outer, red, inner, out));
    return out;
  }
  // General case: kept dims first, reduced dims last, then one row-sum.
  std::vector<int64_t> perm;
  int64_t red = 1;
  for (int64_t i = 0; i < nd; ++i)
    if (!std::binary_search(dims.begin(), dims.end(), i)) perm.push_back(i);
  for (auto d : dims) {
    perm.push_back(d);
    red *= a.shape()[d];
  }
  Tensor moved = a.detach().permute(perm).contiguous();
  COCA_DISPATCH_DEVICE(moved, sum_middle(moved, out.numel(), red, 1, out));
  return out;
}

}  // namespace

Tensor sum(const Tensor& a, std::vector<int64_t> dims_in, bool keepdim) {
  detail::check_defined("sum", a, "input");
  detail::check_cpu("sum", {&a});
  detail::check_float("sum", a);
  const auto dims = normalise_dims(std::move(dims_in), a, "sum");
  Tensor out = sum_forward(a, dims);
  if (keepdim) out = out.reshape(reduced_shape(a.shape(), dims, true));
  record(out, "sum", {a}, [shape = a.shape(), kept = reduced_shape(a.shape(), dims, true)](const Tensor& g) {
    return std::vector<Tensor>{g.reshape(kept).expand(shape).contiguous()};
  });
  return out;
}

Tensor mean(const Tensor& a, std::vector<int64_t> dims_in, bool keepdim) {
  detail::check_defined("mean", a, "input");
  const auto dims = normalise_dims(std::move(dims_in), a, "mean");
  int64_t count = 1;
  for (auto d : dims) count *= a.shape()[d];
  COCA_CHECK(count > 0, "mean: reducing over zero elements of ", a.describe());
  return mul_scalar(sum(a, dims, keepdim), 1.0 / static_cast<double>(count));
}

Tensor max(const Tensor& a, int64_t dim, bool keepdim) {
  detail::check_defined("max", a, "input");
  detail::check_cpu("max", {&a});
  detail::check_float("max", a);
  COCA_CHECK(a.dim() >= 1, "max: input ", a.describe(), " has no dimension to reduce");
  dim = wrap_dim(dim, a, "max");
  const int64_t cols = a.shape()[dim];
  COCA_CHECK(cols > 0, "max: dimension ", dim, " of ", a.describe(), " is empty");
  // Move `dim` last keeping the other dims in order, so that the rows of `moved` come in the
  // order of the output (a transpose(dim, -1) would swap the last dim into dim's place).
  std::vector<int64_t> perm, inverse(a.dim());
  for (int64_t d = 0; d < a.dim(); ++d)
    if (d != dim) perm.push_back(d);
  perm.push_back(dim);
  for (int64_t i = 0; i < a.dim(); ++i) inverse[perm[i]] = i;
  Tensor moved = a.detach().permute(perm).contiguous();  // [..., cols]
  const int64_t rows = moved.numel() / cols;
  Tensor values = Tensor::empty({rows}, a.dtype(), a.device());
  Tensor index = Tensor::empty({rows}, DType::i32, a.device());
  COCA_DISPATCH_DEVICE(moved, max_last(moved, rows, cols, values, index));
  Shape moved_shape = moved.shape();
  Shape out_shape = reduced_shape(a.shape(), {dim}, keepdim);
  Tensor out = values.reshape(out_shape);
  record(out, "max", {a}, [index, moved_shape, inverse, rows, cols](const Tensor& g) {
    Tensor gm = Tensor::empty(moved_shape, g.dtype(), g.device());
    COCA_DISPATCH_DEVICE(g, max_last_backward(g.contiguous(), index, rows, cols, gm));
    return std::vector<Tensor>{gm.permute(inverse)};
  });
  return out;
}

Tensor sum_to_shape(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  const int64_t nd = g.dim();
  const int64_t lead = nd - static_cast<int64_t>(shape.size());
  COCA_CHECK(lead >= 0, "sum_to_shape: cannot reduce ", g.describe(), " to ", shape_str(shape));
  std::vector<int64_t> dims;
  for (int64_t i = 0; i < nd; ++i) {
    if (i < lead) dims.push_back(i);
    else if (shape[i - lead] == 1 && g.shape()[i] != 1) dims.push_back(i);
    else COCA_CHECK(shape[i - lead] == g.shape()[i], "sum_to_shape: cannot reduce ", g.describe(), " to ", shape_str(shape));
  }
  if (dims.empty()) return g.reshape(shape);
  return sum(g, dims, false).reshape(shape);
}

}  // namespace coca
