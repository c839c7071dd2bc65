#pragma once
// Tensor: a strided view of a reference-counted storage, plus the autograd fields.
// Copies of a Tensor share the same TensorImpl (like torch.Tensor handles).
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "coca/tensor/dtype.h"
#include "coca/tensor/error.h"
#include "coca/tensor/random.h"

namespace coca {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);
Shape contiguous_strides(const Shape& s);

struct Storage {
  void* data = nullptr;
  size_t nbytes = 0;
  Device device = Device::CPU;
  Storage(size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

// Bytes of host (CPU) tensor storage alive now, and the most alive at once since the last
// reset: the peak memory of a step, e.g. with and without --grad-checkpointing.
int64_t host_tensor_bytes();
int64_t host_tensor_peak_bytes();
void reset_host_tensor_peak_bytes();  // to the bytes alive now

struct Node;
class Tensor;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements
  Shape shape;
  Shape strides;       // in elements
  DType dtype = DType::f32;
  // autograd
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;
  std::shared_ptr<Node> grad_fn;           // set on op outputs; null on leaves
  std::shared_ptr<Node> grad_accumulator;  // leaves only, created on first use
  std::string name;                        // optional, used in error messages
  // Leaves only: called after backward has accumulated into .grad (gradient bucketing uses it
  // to start communication while the rest of backward runs).
  std::function<void(TensorImpl&)> post_accumulate_hook;
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- factories (all contiguous) ----
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::CPU);
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::CPU);
  static Tensor ones(const Shape& shape, DType dtype = DType::f32, Device device = Device::CPU);
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32, Device device = Device::CPU);
  static Tensor scalar(double value, DType dtype = DType::f32, Device device = Device::CPU) {
    return full({}, value, dtype, device);
  }
  static Tensor randn(const Shape& shape, Generator& gen, DType dtype = DType::f32, double mean = 0, double std = 1);
  static Tensor rand(const Shape& shape, Generator& gen, DType dtype = DType::f32, double lo = 0, double hi = 1);
  static Tensor arange(int64_t n, DType dtype = DType::i32);
  template <typename T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape);

  // ---- metadata ----
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  const Shape& strides() const { return impl().strides; }
  int64_t dim() const { return static_cast<int64_t>(impl().shape.size()); }
  int64_t size(int64_t d) const;
  int64_t stride(int64_t d) const;
  int64_t numel() const { return shape_numel(impl().shape); }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device; }
  bool is_contiguous() const;
  std::string describe() const;  // "f32[2, 3]"
  TensorImpl& impl() const;
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

  // ---- data access ----
  // Checks the dtype; points at element 0 (a device pointer for CUDA tensors).
  template <typename T> T* data() const;
  void* raw_data() const;                  // no dtype check
  double item() const;                     // one-element tensor as double
  template <typename T> std::vector<T> to_vector() const;  // logical order, any strides, any device
  std::vector<double> to_double_vector() const;

  // ---- conversions (not differentiable unless noted) ----
  Tensor contiguous() const;      // differentiable; returns *this when already contiguous
  Tensor clone() const;           // differentiable copy
  Tensor to(DType dtype) const;   // differentiable between floating types
  Tensor to(Device device) const; // differentiable; returns *this when already there
  Tensor cuda() const { return to(Device::CUDA); }
  Tensor cpu() const { return to(Device::CPU); }

  // ---- views (differentiable) ----
  Tensor reshape(const Shape& shape) const;  // a view when possible, else a copy; one -1 allowed
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor transpose(int64_t a, int64_t b) const;
  Tensor t() const { return transpose(-2, -1); }
  Tensor slice(int64_t dim, int64_t start, int64_t end) const;  // [start, end)
  Tensor select(int64_t dim, int64_t index) const;              // removes dim
  Tensor expand(const Shape& shape) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze(int64_t dim) const;

  // ---- autograd ----
  bool requires_grad() const { return impl().requires_grad; }
  Tensor& set_requires_grad(bool value);
  bool is_leaf() const { return impl().grad_fn == nullptr; }
  Tensor grad() const;
  void set_grad(const Tensor& g);
  void zero_grad() { impl().grad.reset(); }
  Tensor detach() const;  // shares storage, no history
  void backward(const Tensor& grad_output = Tensor()) const;
  const std::shared_ptr<Node>& grad_fn() const { return impl().grad_fn; }

  // ---- in-place, never recorded (optimizers, initialisers) ----
  Tensor& fill_(double value);
  Tensor& copy_(const Tensor& src);  // same shape, any dtypes/strides/devices

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// Normalises a possibly negative dimension index; throws naming `op` when out of range.
int64_t wrap_dim(int64_t d, int64_t ndim, const char* op);
// The same, naming the tensor (dtype and shape) in the error.
int64_t wrap_dim(int64_t d, const Tensor& t, const char* op);

// Makes a tensor sharing `base`'s storage with the given geometry (no autograd history).
Tensor make_view(const Tensor& base, const Shape& shape, const Shape& strides, int64_t offset);

// Copies from device memory to the host made by this process so far (every cuda::memcpy to the
// host: Tensor::to, item(), to_vector, norm reads). Each waits for the device to reach it: the
// trainer reports them per step (metrics.jsonl d2h_copies_per_step).
int64_t device_to_host_copies();
void count_device_to_host_copy();

}  // namespace coca
