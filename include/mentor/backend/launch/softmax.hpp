#pragma once
// The CUDA launchers of ops/softmax.hpp: plain C++ declarations (no CUDA header, no tensor, no
// autograd), defined for float and bf16 in src/cuda/softmax.cu.
#include <cstdint>

namespace mentor {

namespace cuda {
// Per row of x [rows, n] (contiguous): out = softmax(row), or log_softmax(row) when `log`;
// stable (shifted by the row max), accumulated in float.
template <class T>
void softmax_rows(const T* x, T* out, int64_t rows, int64_t n, bool log);
// Per row, with y the forward output: softmax gx = y (g − Σ g y); log_softmax gx = g − exp(y) Σ g.
template <class T>
void softmax_backward_rows(const T* y, const T* grad_out, T* grad_x, int64_t rows, int64_t n,
                           bool log);
}  // namespace cuda

}  // namespace mentor
