#pragma once
// The CUDA launchers of ops/shape_ops.hpp: plain C++ declarations (no CUDA header, no tensor, no
// autograd), defined for float and bf16 in src/cuda/shape_ops.cu.
#include <cstdint>

#include "mentor/core/shape.hpp"

namespace mentor {

namespace cuda {
// All launchers: T in float, bf16 and int64_t; index tensors contiguous int64, already validated
// (every index in range); outputs contiguous.
//
// out [outer, count, inner] = x [outer, dim_size, inner] at ids [count] along the middle axis.
template <class T>
void index_select(const T* x, const int64_t* ids, T* out, int64_t outer, int64_t dim_size,
                  int64_t count, int64_t inner);
// grad_x [outer, dim_size, inner] += grad_out [outer, count, inner] scattered at ids (repeated ids
// accumulate: atomics). grad_x is zeroed by the caller. T in float and bf16.
template <class T>
void index_add(const T* grad_out, const int64_t* ids, T* grad_x, int64_t outer, int64_t dim_size,
               int64_t count, int64_t inner);
// torch.gather: out[idx] = x[idx with idx[dim] replaced by ids[idx]] for every idx of ids_shape;
// x contiguous of x_shape (same rank; ids_shape[d] <= x_shape[d] for d != dim).
template <class T>
void gather(const T* x, const Shape& x_shape, const int64_t* ids, const Shape& ids_shape, int dim,
            T* out);
// The adjoint of gather: grad_x (x_shape, zeroed by the caller) += grad_out (ids_shape) scattered
// (atomics). T in float and bf16.
template <class T>
void scatter_add(const T* grad_out, const int64_t* ids, const Shape& ids_shape, int dim, T* grad_x,
                 const Shape& x_shape);
// out = cond ? a : b over `shape`, each input a strided view (strides in elements, 0 where
// broadcast) of that shape; out contiguous. T also bool.
template <class T>
void where(const bool* cond, const Strides& cond_strides, const T* a, const Strides& a_strides,
           const T* b, const Strides& b_strides, T* out, const Shape& shape);
}  // namespace cuda

}  // namespace mentor
