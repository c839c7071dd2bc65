#pragma once
#include "coca/tensor/tensor.h"

namespace coca::cpu {

// logits [N, C] with a contiguous last dim (row stride ld); targets i32 [N].
// lse[r] = log-sum-exp of row r (for every row). Returns the sum of (lse - logit[target]) over
// rows with target != ignore_index and sets `count` to their number. Throws naming the row for
// a target outside [0, C) that is not ignore_index.
double cross_entropy_forward(const Tensor& logits, int64_t ld, const Tensor& targets, int64_t ignore_index,
                             Tensor& lse, int64_t& count);
// dlogits [N, C] contiguous = scale * (softmax - onehot) on counted rows, 0 on ignored rows.
void cross_entropy_backward(const Tensor& logits, int64_t ld, const Tensor& targets, int64_t ignore_index,
                            const Tensor& lse, double scale, Tensor& dlogits);

}  // namespace coca::cpu
