#include "coca/kernels/cpu/copy.h"

#include <cstring>

#include "coca/kernels/cpu/profile.h"
#include "coca/tensor/dispatch.h"

namespace coca::cpu {

template <typename D, typename S>
static inline D convert(S v) {
  if constexpr (std::is_same_v<D, S>) {
    return v;
  } else if constexpr (std::is_same_v<D, bf16> && std::is_same_v<S, double>) {
    return bf16::from_bits(bf16::from_double(v));  // one rounding, not two through float
  } else if constexpr (std::is_same_v<D, bf16>) {
    return bf16(static_cast<float>(to_double(v)));
  } else if constexpr (std::is_same_v<S, bf16>) {
    return static_cast<D>(static_cast<float>(v));
  } else {
    return static_cast<D>(v);
  }
}

void copy_strided(Tensor& dst, const Tensor& src) {
  ProfileScope prof("copy");
  COCA_CHECK(dst.device() == Device::CPU && src.device() == Device::CPU, "copy: CPU kernel given ",
             src.describe(), " -> ", dst.describe());
  if (dst.dtype() == src.dtype() && dst.is_contiguous() && src.is_contiguous()) {
    if (dst.raw_data() != src.raw_data())
      std::memmove(dst.raw_data(), src.raw_data(), src.numel() * dtype_size(src.dtype()));
    return;
  }
  dispatch_all(dst.dtype(), [&](auto dtag) {
    using D = typename decltype(dtag)::type;
    dispatch_all(src.dtype(), [&](auto stag) {
      using S = typename decltype(stag)::type;
      D* d = dst.data<D>();
      const S* s = src.data<S>();
      for_each_run<2>(dst.shape(), {dst.strides(), src.strides()},
                      [&](std::array<int64_t, 2> off, int64_t n, std::array<int64_t, 2> st) {
                        D* dp = d + off[0];
                        const S* sp = s + off[1];
                        if (st[0] == 1 && st[1] == 1) {
                          for (int64_t i = 0; i < n; ++i) dp[i] = convert<D>(sp[i]);
                        } else {
                          for (int64_t i = 0; i < n; ++i) dp[i * st[0]] = convert<D>(sp[i * st[1]]);
                        }
                      });
    });
  });
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    COCA_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", shape_str(a), " and ", shape_str(b),
               " cannot be broadcast together");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Shape broadcast_strides(const Tensor& t, const Shape& shape, const char* op) {
  const size_t n = shape.size();
  const size_t m = t.shape().size();
  COCA_CHECK(m <= n, op, ": cannot broadcast ", shape_str(t.shape()), " to ", shape_str(shape));
  Shape st(n, 0);
  for (size_t i = 0; i < m; ++i) {
    const int64_t src = t.shape()[i];
    const int64_t dst = shape[i + n - m];
    COCA_CHECK(src == dst || src == 1, op, ": cannot broadcast ", shape_str(t.shape()), " to ", shape_str(shape));
    st[i + n - m] = src == 1 ? 0 : t.strides()[i];
  }
  return st;
}

}  // namespace coca::cpu
