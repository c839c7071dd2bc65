#include "coca/tensor/tensor.h"

#include <atomic>
#include <malloc.h>

#include <cstdlib>
#include <cstring>

#include "coca/autograd/node.h"
#include "coca/kernels/cpu/copy.h"
#include "coca/kernels/cuda/runtime.h"
#include "coca/tensor/dispatch.h"
#ifdef COCA_WITH_CUDA
#include "coca/kernels/cuda/copy.h"
#endif

namespace coca {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::bf16: return 2;
    case DType::i32: return 4;
    case DType::u8: return 1;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::bf16: return "bf16";
    case DType::i32: return "i32";
    case DType::u8: return "u8";
  }
  return "?";
}

const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (int64_t i = static_cast<int64_t>(s.size()) - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= s[i];
  }
  return st;
}

int64_t wrap_dim(int64_t d, int64_t ndim, const char* op) {
  const int64_t w = d < 0 ? d + ndim : d;
  COCA_CHECK(w >= 0 && w < std::max<int64_t>(ndim, 1) && (ndim > 0 || w == 0), op, ": dimension ", d,
             " is out of range for a tensor of ", ndim, " dimensions");
  return w;
}

int64_t wrap_dim(int64_t d, const Tensor& t, const char* op) {
  const int64_t ndim = t.dim();
  const int64_t w = d < 0 ? d + ndim : d;
  COCA_CHECK(w >= 0 && w < std::max<int64_t>(ndim, 1) && (ndim > 0 || w == 0), op, ": dimension ", d,
             " is out of range for ", t.describe());
  return w;
}

// ---- storage ------------------------------------------------------------------------
#ifdef COCA_WITH_CUDA
void* cuda_storage_alloc(size_t nbytes);
void cuda_storage_free(void* p);
#endif

// Training allocates and frees the same large activation buffers every step. glibc would
// return each one to the kernel (mmap/munmap) and page-fault it back in on the next step;
// keeping freed memory in the heap makes the steady state allocation-free for the kernel.
static bool tune_malloc() {
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, -1);
  return true;
}

static std::atomic<int64_t> g_host_bytes{0}, g_host_peak{0};

int64_t host_tensor_bytes() { return g_host_bytes.load(); }
int64_t host_tensor_peak_bytes() { return g_host_peak.load(); }
void reset_host_tensor_peak_bytes() { g_host_peak.store(g_host_bytes.load()); }

Storage::Storage(size_t n, Device d) : nbytes(n), device(d) {
  static const bool tuned = tune_malloc();
  (void)tuned;
  if (d == Device::CPU) {
    cpu::ProfileScope prof("alloc");
    const size_t rounded = ((n + 63) / 64) * 64;
    data = rounded ? std::aligned_alloc(64, rounded) : nullptr;
    COCA_CHECK(data || rounded == 0, "out of host memory allocating ", n, " bytes");
    const int64_t now = g_host_bytes += static_cast<int64_t>(n);
    int64_t peak = g_host_peak.load();
    while (now > peak && !g_host_peak.compare_exchange_weak(peak, now)) {
    }
  } else {
#ifdef COCA_WITH_CUDA
    data = cuda_storage_alloc(n);
#else
    throw Error("CUDA tensors need a build with the CUDA backend (configure with -DCOCA_CUDA=ON)");
#endif
  }
}

Storage::~Storage() {
  if (device == Device::CPU) {
    cpu::ProfileScope prof("free");
    std::free(data);
    g_host_bytes -= static_cast<int64_t>(nbytes);
  } else {
#ifdef COCA_WITH_CUDA
    cuda_storage_free(data);
#endif
  }
}

// ---- factories ----------------------------------------------------------------------
Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (auto d : shape) COCA_CHECK(d >= 0, "empty: negative dimension in shape ", shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(shape_numel(shape) * dtype_size(dtype), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  if (device == Device::CPU) {
    cpu::ProfileScope prof("zeros");
    std::memset(t.raw_data(), 0, t.numel() * dtype_size(dtype));
  }
  else t.fill_(0.0);
  return t;
}

Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}

Tensor Tensor::randn(const Shape& shape, Generator& gen, DType dtype, double mean, double std) {
  Tensor t = empty(shape, dtype);
  dispatch_all(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = t.data<T>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = from_double<T>(mean + std * gen.normal());
  });
  return t;
}

Tensor Tensor::rand(const Shape& shape, Generator& gen, DType dtype, double lo, double hi) {
  Tensor t = empty(shape, dtype);
  dispatch_all(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = t.data<T>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = from_double<T>(lo + (hi - lo) * gen.uniform());
  });
  return t;
}

Tensor Tensor::arange(int64_t n, DType dtype) {
  Tensor t = empty({n}, dtype);
  dispatch_all(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = t.data<T>();
    for (int64_t i = 0; i < n; ++i) p[i] = from_double<T>(static_cast<double>(i));
  });
  return t;
}

template <typename T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape) {
  COCA_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "from_vector: ", values.size(),
             " values do not fill shape ", shape_str(shape));
  Tensor t = empty(shape, dtype_of<T>::value);
  if (!values.empty()) std::memcpy(t.raw_data(), values.data(), values.size() * sizeof(T));
  return t;
}
template Tensor Tensor::from_vector<float>(const std::vector<float>&, const Shape&);
template Tensor Tensor::from_vector<double>(const std::vector<double>&, const Shape&);
template Tensor Tensor::from_vector<int32_t>(const std::vector<int32_t>&, const Shape&);
template Tensor Tensor::from_vector<uint8_t>(const std::vector<uint8_t>&, const Shape&);
template Tensor Tensor::from_vector<bf16>(const std::vector<bf16>&, const Shape&);

// ---- metadata -----------------------------------------------------------------------
TensorImpl& Tensor::impl() const {
  COCA_CHECK(impl_ != nullptr, "use of an undefined tensor");
  return *impl_;
}

int64_t Tensor::size(int64_t d) const { return impl().shape[wrap_dim(d, *this, "size")]; }
int64_t Tensor::stride(int64_t d) const { return impl().strides[wrap_dim(d, *this, "stride")]; }

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int64_t i = dim() - 1; i >= 0; --i) {
    if (impl().shape[i] == 1) continue;
    if (impl().strides[i] != expected) return false;
    expected *= impl().shape[i];
  }
  return true;
}

std::string Tensor::describe() const {
  if (!defined()) return "undefined";
  return str_cat(dtype_name(dtype()), shape_str(shape()), device() == Device::CUDA ? "@cuda" : "");
}

template <typename T>
T* Tensor::data() const {
  COCA_CHECK(dtype() == dtype_of<T>::value, "data<", dtype_name(dtype_of<T>::value), ">() on a ", describe(),
             " tensor");
  return static_cast<T*>(impl().storage->data) + impl().offset;
}
template float* Tensor::data<float>() const;
template double* Tensor::data<double>() const;
template bf16* Tensor::data<bf16>() const;
template int32_t* Tensor::data<int32_t>() const;
template uint8_t* Tensor::data<uint8_t>() const;

void* Tensor::raw_data() const {
  return static_cast<char*>(impl().storage->data) + impl().offset * dtype_size(dtype());
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  if (device() != Device::CPU) return detach().to(Device::CPU).to_vector<T>();
  Tensor c = Tensor::empty(shape(), dtype_of<T>::value);
  cpu::copy_strided(c, *this);
  const T* p = c.data<T>();
  return std::vector<T>(p, p + c.numel());
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<uint8_t> Tensor::to_vector<uint8_t>() const;
template std::vector<bf16> Tensor::to_vector<bf16>() const;

std::vector<double> Tensor::to_double_vector() const { return to_vector<double>(); }

double Tensor::item() const {
  COCA_CHECK(numel() == 1, "item: tensor ", describe(), " has ", numel(), " elements, not one");
  return to_double_vector()[0];
}

Tensor make_view(const Tensor& base, const Shape& shape, const Shape& strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.impl().storage;
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = base.dtype();
  return Tensor(std::move(impl));
}

// ---- autograd fields ----------------------------------------------------------------
Tensor& Tensor::set_requires_grad(bool value) {
  COCA_CHECK(!value || is_floating(dtype()), "set_requires_grad: a ", describe(),
             " tensor cannot require grad (floating dtypes only)");
  COCA_CHECK(is_leaf() || value, "set_requires_grad(false) on a non-leaf tensor; use detach()");
  impl().requires_grad = value;
  return *this;
}

Tensor Tensor::grad() const { return impl().grad ? Tensor(impl().grad) : Tensor(); }

void Tensor::set_grad(const Tensor& g) {
  if (!g.defined()) {
    impl().grad.reset();
    return;
  }
  COCA_CHECK(g.shape() == shape(), "set_grad: gradient ", g.describe(), " does not match tensor ", describe());
  impl().grad = g.impl_ptr();
}

Tensor Tensor::detach() const { return make_view(*this, shape(), strides(), impl().offset); }

void Tensor::backward(const Tensor& grad_output) const { run_backward(*this, grad_output); }

Tensor& Tensor::fill_(double value) {
  if (device() == Device::CUDA) {
#ifdef COCA_WITH_CUDA
    Tensor self = *this;
    cuda::fill(self, value);
#endif
    return *this;
  }
  dispatch_all(dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T v = from_double<T>(value);
    Tensor self = *this;
    cpu::fill_strided<T>(self, v);
  });
  return *this;
}

Tensor& Tensor::copy_(const Tensor& src) {
  COCA_CHECK(src.shape() == shape(), "copy_: source ", src.describe(), " does not match destination ", describe());
  if (device() == Device::CPU && src.device() == Device::CPU) {
    cpu::copy_strided(*this, src);
    return *this;
  }
#ifdef COCA_WITH_CUDA
  if (device() == Device::CUDA && src.device() == Device::CUDA) {
    cuda::copy_strided(*this, src);
    return *this;
  }
  if (numel() == 0) return *this;
  if (device() == Device::CUDA) {
    // Host -> device: convert and pack on the host, one transfer, then scatter on the device
    // when the destination is strided.
    Tensor packed = Tensor::empty(shape(), dtype());
    cpu::copy_strided(packed, src);
    Tensor staged = is_contiguous() ? *this : Tensor::empty(shape(), dtype(), Device::CUDA);
    cuda::memcpy(staged.raw_data(), packed.raw_data(), numel() * dtype_size(dtype()), 0);
    if (!staged.same(*this)) cuda::copy_strided(*this, staged);
  } else {
    // Device -> host: pack on the device, one transfer, then convert on the host.
    Tensor packed = src.is_contiguous() ? src : Tensor::empty(src.shape(), src.dtype(), Device::CUDA);
    if (!packed.same(src)) cuda::copy_strided(packed, src);
    Tensor host = Tensor::empty(shape(), src.dtype());
    cuda::memcpy(host.raw_data(), packed.raw_data(), numel() * dtype_size(src.dtype()), 1);
    cpu::copy_strided(*this, host);
  }
  return *this;
#else
  throw Error(str_cat("copy_: ", src.describe(), " -> ", describe(), " needs a build with the CUDA backend"));
#endif
}

namespace {
std::atomic<int64_t> g_device_to_host_copies{0};
}  // namespace

int64_t device_to_host_copies() { return g_device_to_host_copies.load(std::memory_order_relaxed); }
void count_device_to_host_copy() { g_device_to_host_copies.fetch_add(1, std::memory_order_relaxed); }

}  // namespace coca
