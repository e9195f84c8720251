#pragma once
// The CUDA launchers of ops/normalize.hpp: plain C++ declarations (no CUDA header, no tensor, no
// autograd), defined for float and bf16 in src/cuda/softmax.cu.
#include <cstdint>

#include "mentor/core/dtype.hpp"

namespace mentor {

namespace cuda {
// Per row r of x [rows, n] (contiguous): norms[r] = sqrt(Σ x²) (float), out = row / max(norms[r],
// eps).
template <class T>
void l2_normalize_rows(const T* x, T* out, acc_t<T>* norms, int64_t rows, int64_t n, float eps);
// Per row, d = max(norms[r], eps): grad_x = (g − x·(Σ g·x)/d²) / d when norms[r] >= eps, else g /
// d.
template <class T>
void l2_normalize_backward_rows(const T* x, const acc_t<T>* norms, const T* grad_out, T* grad_x,
                                int64_t rows, int64_t n, float eps);
}  // namespace cuda

}  // namespace mentor
