// Views and copies: reshape, permute, slice, expand, ... Each view shares storage with its
// input; its backward maps the gradient back to the input's geometry.
#include <numeric>

#include "coca/autograd/ops.h"
#include "coca/kernels/cpu/copy.h"

namespace coca {

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor out = Tensor::empty(shape(), dtype(), device());
  out.copy_(*this);
  record(out, "clone", {*this}, [](const Tensor& g) { return std::vector<Tensor>{g}; });
  return out;
}

Tensor Tensor::to(DType target) const {
  if (target == dtype()) return *this;
  Tensor out = Tensor::empty(shape(), target, device());
  out.copy_(*this);
  if (is_floating(target) && is_floating(dtype())) {
    const DType source = dtype();
    record(out, "to", {*this}, [source](const Tensor& g) { return std::vector<Tensor>{g.to(source)}; });
  }
  return out;
}

Tensor Tensor::to(Device target) const {
  if (target == device()) return *this;
  Tensor out = Tensor::empty(shape(), dtype(), target);
  out.copy_(*this);
  if (is_floating(dtype())) {
    const Device source = device();
    record(out, "to_device", {*this}, [source](const Tensor& g) { return std::vector<Tensor>{g.to(source)}; });
  }
  return out;
}

Tensor Tensor::reshape(const Shape& requested) const {
  Shape target = requested;
  int64_t infer = -1, known = 1;
  for (size_t i = 0; i < target.size(); ++i) {
    if (target[i] == -1) {
      COCA_CHECK(infer < 0, "reshape: more than one -1 in ", shape_str(requested));
      infer = static_cast<int64_t>(i);
    } else {
      known *= target[i];
    }
  }
  if (infer >= 0) {
    COCA_CHECK(known > 0 && numel() % known == 0, "reshape: cannot reshape ", describe(), " to ", shape_str(requested));
    target[infer] = numel() / known;
  }
  COCA_CHECK(shape_numel(target) == numel(), "reshape: cannot reshape ", describe(), " to ", shape_str(requested));
  if (target == shape()) return *this;
  Tensor src = contiguous();
  Tensor out = make_view(src, target, contiguous_strides(target), src.impl().offset);
  const Shape original = shape();
  record(out, "reshape", {src}, [original](const Tensor& g) { return std::vector<Tensor>{g.reshape(original)}; });
  return out;
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  const int64_t n = dim();
  COCA_CHECK(static_cast<int64_t>(dims.size()) == n, "permute: ", dims.size(), " dims given for ", describe());
  Shape shp(n), st(n);
  std::vector<int64_t> inverse(n, -1);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t d = wrap_dim(dims[i], *this, "permute");
    COCA_CHECK(inverse[d] < 0, "permute: dimension ", d, " repeated for ", describe());
    inverse[d] = i;
    shp[i] = shape()[d];
    st[i] = strides()[d];
  }
  Tensor out = make_view(*this, shp, st, impl().offset);
  record(out, "permute", {*this}, [inverse](const Tensor& g) { return std::vector<Tensor>{g.permute(inverse)}; });
  return out;
}

Tensor Tensor::transpose(int64_t a, int64_t b) const {
  const int64_t n = dim();
  a = wrap_dim(a, *this, "transpose");
  b = wrap_dim(b, *this, "transpose");
  std::vector<int64_t> dims(n);
  std::iota(dims.begin(), dims.end(), 0);
  std::swap(dims[a], dims[b]);
  return permute(dims);
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end) const {
  d = wrap_dim(d, *this, "slice");
  const int64_t len = shape()[d];
  COCA_CHECK(0 <= start && start <= end && end <= len, "slice: range [", start, ", ", end, ") of dimension ", d,
             " is outside ", describe());
  Shape shp = shape();
  shp[d] = end - start;
  Tensor out = make_view(*this, shp, strides(), impl().offset + start * strides()[d]);
  const Shape original = shape();
  const DType dt = dtype();
  record(out, "slice", {*this}, [original, dt, d, start, end](const Tensor& g) {
    Tensor full = Tensor::zeros(original, dt, g.device());
    Tensor window = full.slice(d, start, end);
    window.copy_(g);
    return std::vector<Tensor>{full};
  });
  return out;
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  d = wrap_dim(d, *this, "select");
  COCA_CHECK(index >= 0 && index < shape()[d], "select: index ", index, " out of range for dimension ", d, " of ",
             describe());
  return slice(d, index, index + 1).squeeze(d);
}

Tensor Tensor::expand(const Shape& target) const {
  Shape st = cpu::broadcast_strides(*this, target, "expand");
  if (target == shape()) return *this;
  Tensor out = make_view(*this, target, st, impl().offset);
  const Shape original = shape();
  record(out, "expand", {*this}, [original](const Tensor& g) { return std::vector<Tensor>{sum_to_shape(g, original)}; });
  return out;
}

Tensor Tensor::unsqueeze(int64_t d) const {
  COCA_CHECK(d >= -(dim() + 1) && d <= dim(), "unsqueeze: dimension ", d, " is out of range for ", describe());
  d = d < 0 ? d + dim() + 1 : d;
  Shape shp = shape();
  shp.insert(shp.begin() + d, 1);
  Shape st = strides();
  st.insert(st.begin() + d, d < dim() ? strides()[d] * shape()[d] : 1);
  Tensor out = make_view(*this, shp, st, impl().offset);
  const Shape original = shape();
  record(out, "unsqueeze", {*this}, [original](const Tensor& g) { return std::vector<Tensor>{g.reshape(original)}; });
  return out;
}

Tensor Tensor::squeeze(int64_t d) const {
  d = wrap_dim(d, *this, "squeeze");
  COCA_CHECK(shape()[d] == 1, "squeeze: dimension ", d, " of ", describe(), " is not 1");
  Shape shp = shape(), st = strides();
  shp.erase(shp.begin() + d);
  st.erase(st.begin() + d);
  Tensor out = make_view(*this, shp, st, impl().offset);
  const Shape original = shape();
  record(out, "squeeze", {*this}, [original](const Tensor& g) { return std::vector<Tensor>{g.reshape(original)}; });
  return out;
}

}  // namespace coca
