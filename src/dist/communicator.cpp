#include "coca/dist/communicator.h"

#include <cstdlib>

namespace coca::dist {

CommOptions CommOptions::from_env() {
  CommOptions o;
  if (const char* v = std::getenv("COCA_COLLECTIVE_TIMEOUT_S")) {
    char* end = nullptr;
    const double s = std::strtod(v, &end);
    COCA_CHECK(end != v && *end == '\0' && s > 0, "COCA_COLLECTIVE_TIMEOUT_S='", v,
               "' is not a positive number of seconds");
    o.timeout = std::chrono::milliseconds(static_cast<int64_t>(s * 1000));
  }
  return o;
}

const char* reduce_op_name(ReduceOp op) { return op == ReduceOp::Sum ? "sum" : "average"; }

void check_tensor_arg(const Communicator& c, const char* what, const Tensor& t) {
  COCA_CHECK(t.defined(), c.backend(), " ", what, " on rank ", c.rank(), ": undefined tensor");
  COCA_CHECK(t.device() == c.device(), c.backend(), " ", what, " on rank ", c.rank(), ": tensor ", t.describe(),
             " is not on the ", device_name(c.device()), " device this communicator serves");
  COCA_CHECK(t.is_contiguous(), c.backend(), " ", what, " on rank ", c.rank(), ": tensor ", t.describe(),
             " is not contiguous");
  const DType d = t.dtype();
  COCA_CHECK(d == DType::f32 || d == DType::f64 || d == DType::bf16 || d == DType::i32, c.backend(), " ", what,
             " on rank ", c.rank(), ": dtype ", dtype_name(d), " is not supported (f32, f64, bf16, i32)");
  COCA_CHECK(t.numel() <= (int64_t{1} << 31) - 1, c.backend(), " ", what, " on rank ", c.rank(), ": tensor ",
             t.describe(), " has more than 2^31-1 elements; split it");
}

void check_sizes(const Communicator& c, const char* what, const Tensor& small, const Tensor& big) {
  check_tensor_arg(c, what, small);
  check_tensor_arg(c, what, big);
  COCA_CHECK(small.dtype() == big.dtype(), c.backend(), " ", what, " on rank ", c.rank(), ": dtypes differ (",
             small.describe(), " and ", big.describe(), ")");
  COCA_CHECK(big.numel() == small.numel() * c.size(), c.backend(), " ", what, " on rank ", c.rank(), ": ",
             big.describe(), " must hold world size (", c.size(), ") times the elements of ", small.describe());
}

}  // namespace coca::dist
