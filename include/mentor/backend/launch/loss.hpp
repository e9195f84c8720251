#pragma once
// The CUDA launchers of ops/loss.hpp: plain C++ declarations (no CUDA header, no tensor, no
// autograd), defined for float and bf16 in src/cuda/loss.cu.
#include <cstdint>

#include "mentor/core/dtype.hpp"

namespace mentor {

namespace cuda {
// logits [rows, vocab] contiguous, targets [rows] (expected in [0, vocab); an out-of-range target
// must not be read: its row's loss is NaN), valid = per-sample weights [rows / rows_per_sample] or
// nullptr (every row weighs 1). Writes, all on the device:
//   lse[r]       = log Σ_v exp(logits[r, v])                       (acc precision, stable)
//   inv_denom[0] = 1 / max(Σ_b valid[b] · rows_per_sample, 1), or 1 / rows without valid
//   loss[0]      = inv_denom[0] · Σ_r w(r) · (lse[r] − logits[r, targets[r]]),  w(r) = valid[r /
//   rows_per_sample] or 1
template <class T>
void cross_entropy_forward(const T* logits, const int64_t* targets, const T* valid, int64_t rows,
                           int64_t vocab, int64_t rows_per_sample, acc_t<T>* lse,
                           acc_t<T>* inv_denom, T* loss);
// grad_logits[r, v] = grad_loss[0] · inv_denom[0] · w(r) · (exp(logits[r, v] − lse[r]) − [v ==
// targets[r]]) (grad_loss is the device scalar gradient of `loss`; rows with w(r) = 0 are written
// as 0).
template <class T>
void cross_entropy_backward(const T* logits, const int64_t* targets, const T* valid, int64_t rows,
                            int64_t vocab, int64_t rows_per_sample, const acc_t<T>* lse,
                            const acc_t<T>* inv_denom, const T* grad_loss, T* grad_logits);
}  // namespace cuda

}  // namespace mentor
