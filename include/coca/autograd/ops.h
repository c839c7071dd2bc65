#pragma once
// The differentiable operations. Each works on float32 and float64 (and, where noted, bf16
// through float32) tensors, forward and backward; the kernels live in src/kernels/<device>/,
// one file per family, and the autograd function beside its forward in src/autograd/ops/.
#include <optional>
#include <vector>

#include "coca/autograd/node.h"
#include "coca/tensor/tensor.h"

namespace coca {

// ---- matmul (src/autograd/ops/matmul.cpp, kernels/cpu/matmul.cpp) ----
// a [..., M, K] @ b [..., K, N]; 2-D x 2-D, batched (equal leading dims) and N-D x 2-D.
// Operands may be transposed views: no copy is made when either of the last two strides is 1.
Tensor matmul(const Tensor& a, const Tensor& b);
// x [..., in] W^T + b: W [out, in], bias [out] (optional). The layer every Linear uses.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// ---- elementwise (ops/elementwise.cpp, kernels/cpu/elementwise.cpp); broadcasting ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor add_scalar(const Tensor& a, double s);
Tensor mul_scalar(const Tensor& a, double s);
Tensor pow_scalar(const Tensor& a, double p);
Tensor neg(const Tensor& a);
Tensor exp(const Tensor& a);
Tensor log(const Tensor& a);
Tensor sqrt(const Tensor& a);
Tensor rsqrt(const Tensor& a);
Tensor tanh(const Tensor& a);
Tensor gelu(const Tensor& a);  // exact: x * Phi(x) with erf
// gelu(h + bias) for h [..., C] and bias [C]: the MLP's first bias and activation in one pass
// (and their gradients in one pass: dh and the column sums that make dbias). float32/float64.
Tensor bias_gelu(const Tensor& h, const Tensor& bias);
Tensor clamp(const Tensor& a, double lo, double hi);

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& a) { return neg(a); }
inline Tensor operator+(const Tensor& a, double s) { return add_scalar(a, s); }
inline Tensor operator-(const Tensor& a, double s) { return add_scalar(a, -s); }
inline Tensor operator*(const Tensor& a, double s) { return mul_scalar(a, s); }
inline Tensor operator*(double s, const Tensor& a) { return mul_scalar(a, s); }
inline Tensor operator/(const Tensor& a, double s) { return mul_scalar(a, 1.0 / s); }

// ---- reductions (ops/reduce.cpp, kernels/cpu/reduce.cpp) ----
// Empty `dims` reduces over every dimension.
Tensor sum(const Tensor& a, std::vector<int64_t> dims = {}, bool keepdim = false);
Tensor mean(const Tensor& a, std::vector<int64_t> dims = {}, bool keepdim = false);
Tensor max(const Tensor& a, int64_t dim, bool keepdim = false);  // gradient to the first max
// Sums `g` down to `shape` (the inverse of broadcasting).
Tensor sum_to_shape(const Tensor& g, const Shape& shape);

// ---- softmax family (ops/softmax.cpp, kernels/cpu/softmax.cpp); over dim (default last) ----
Tensor softmax(const Tensor& a, int64_t dim = -1);
Tensor log_softmax(const Tensor& a, int64_t dim = -1);

// ---- normalisation (ops/norm.cpp, kernels/cpu/norm.cpp) ----
// Layer norm over the last dim; weight/bias [C] (either may be undefined).
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);
// x / max(||x||_2, eps) over `dim`.
Tensor l2_normalize(const Tensor& x, int64_t dim = -1, double eps = 1e-12);

// ---- embedding (ops/embedding.cpp, kernels/cpu/embedding.cpp) ----
// weight [V, D], indices i32 [...] -> [..., D]; backward is a scatter-add into weight.
Tensor embedding(const Tensor& weight, const Tensor& indices);

// ---- cross-entropy (ops/cross_entropy.cpp, kernels/cpu/cross_entropy.cpp) ----
// logits [N, C] (any float strides on the last dim contiguous), targets i32 [N].
// Returns sum over rows whose target != ignore_index of -log_softmax(logits)[target], divided
// by `normalizer` when > 0, else by the count of those rows (the mean). Backward keeps only
// the per-row log-sum-exp (one [N] buffer) and recomputes the probabilities.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100,
                     double normalizer = -1);
// On the GPU cross_entropy and embedding check their targets and indices on the device without
// waiting: this raises the first one out of range seen since the last call (two device-to-host
// copies; nothing on the CPU, which raises at once). The trainer calls it at logging steps.
void check_deferred_errors();

// ---- attention (ops/attention.cpp, kernels/cpu/attention.cpp) ----
struct AttentionMask {
  bool causal = false;          // key j visible from query i only when j <= i (+ offset S-T)
  Tensor additive;              // optional float [T, S] or [B, T, S], added to the scores
  Tensor key_padding;           // optional u8/i32 [B, S]: nonzero = key masked out
};
// q [B, H, T, D], k and v [B, H, S, D] (views with a contiguous last dim are used without a
// copy), scale defaults to D^-0.5. Returns [B, H, T, D] laid out as [B, T, H, D] in memory,
// so that out.transpose(1, 2).reshape({B, T, H*D}) is a free view. Fused: the forward keeps
// only the per-row log-sum-exp; backward recomputes the probabilities. A row with every
// key masked gives zeros.
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const AttentionMask& mask = {}, double scale = -1);

// Attention straight from projection outputs, without splitting heads into separate tensors:
// q is columns [q_col, q_col + width) of q_src [B, T, Cq]; k and v are columns [k_col, ...) and
// [v_col, ...) of kv_src [B, S, Ckv] (both contiguous; kv_src may be q_src itself, as for a
// packed [B, T, 3W] self-attention projection). Returns [B, T, width]. The backward writes the
// gradient of each source in one buffer, so no per-head or per-slice copies are made.
// (ops/attention_packed.cpp)
Tensor attention_from_projections(const Tensor& q_src, int64_t q_col, const Tensor& kv_src, int64_t k_col,
                                  int64_t v_col, int64_t width, int64_t heads,
                                  const AttentionMask& mask = {});

// ---- shape ops (ops/shape.cpp) ----
Tensor concat(const std::vector<Tensor>& parts, int64_t dim);
std::vector<Tensor> split(const Tensor& a, const std::vector<int64_t>& sizes, int64_t dim);

// ---- dropout (ops/dropout.cpp); identity when p == 0 or not training ----
Tensor dropout(const Tensor& a, double p, Generator& gen, bool training = true);

}  // namespace coca
