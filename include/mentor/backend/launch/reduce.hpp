#pragma once
// The CUDA launchers of ops/reduce.hpp: plain C++ declarations (no CUDA header, no tensor, no
// autograd), defined for float and bf16 in src/cuda/reduce.cu.
#include <cstdint>

namespace mentor {

namespace cuda {
// out[o * inner + j] = scale · Σ_{k < n} x[(o * n + k) * inner + j]; x contiguous [outer, n, inner]
// (the whole tensor is outer = inner = 1). Accumulate in float (or better).
template <class T>
void sum_axis(const T* x, T* out, int64_t outer, int64_t n, int64_t inner, float scale);
// For each row r of x [rows, n] (contiguous, n >= 1): indices[r] = index of the first maximal
// (largest) or minimal element, NaN counting as better than any number; values[r] = that element
// unless values == nullptr.
template <class T>
void arg_best_rows(const T* x, int64_t rows, int64_t n, bool largest, T* values, int64_t* indices);
// For each row r of x [rows, n]: values/indices [rows, k] = the k best elements of the row in
// order, best first (largest or smallest; ties by lower index; NaN counts as largest).
template <class T>
void topk_rows(const T* x, int64_t rows, int64_t n, int64_t k, bool largest, T* values,
               int64_t* indices);
// grad_x[r * n + idx[r * k + i]] += g[r * k + i] for r < rows, i < k; grad_x [rows, n] is zeroed by
// the caller. Indices within a row may repeat only where the op allows it (max: k = 1).
template <class T>
void scatter_rows_add(const T* g, const int64_t* idx, int64_t rows, int64_t k, int64_t n,
                      T* grad_x);
}  // namespace cuda

}  // namespace mentor
