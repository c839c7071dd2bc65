// Embedding lookup; its backward is a scatter-add into the weight.
#include "coca/kernels/cpu/embedding.h"
#ifdef COCA_WITH_CUDA
#include "coca/kernels/cuda/embedding.h"
#endif

#include "common.h"

namespace coca {

Tensor embedding(const Tensor& weight, const Tensor& indices) {
  detail::check_defined("embedding", weight, "weight");
  detail::check_defined("embedding", indices, "indices");
  detail::check_cpu("embedding", {&weight, &indices});
  COCA_CHECK(weight.dim() == 2, "embedding: weight ", weight.describe(), " must be [V, D]");
  COCA_CHECK(indices.dtype() == DType::i32, "embedding: indices ", indices.describe(), " must be i32");
  Tensor w = weight.detach().contiguous();
  Tensor idx = indices.contiguous();
  Shape out_shape = indices.shape();
  out_shape.push_back(weight.size(1));
  Tensor out = Tensor::empty(out_shape, weight.dtype(), weight.device());
  COCA_DISPATCH_DEVICE(w, embedding_forward(w, idx, out));
  record(out, "embedding", {weight}, [idx, wshape = weight.shape()](const Tensor& g) {
    Tensor dw = Tensor::empty(wshape, g.dtype(), g.device());
    COCA_DISPATCH_DEVICE(g, embedding_backward(g.contiguous(), idx, dw));
    return std::vector<Tensor>{dw};
  });
  return out;
}

}  // namespace coca
