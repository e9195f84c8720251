// Launchers of ops/shape_ops.hpp: index_select / gather (every element type), their scatter-add
// adjoints (float and bf16, repeated indices accumulate), and where.
#include <cuda_runtime.h>

#include <array>
#include <cstdint>

#include "mentor/backend/cuda/kernels/atomics.cuh"
#include "mentor/backend/cuda/kernels/common.cuh"
#include "mentor/backend/cuda/kernels/strided.cuh"
#include "mentor/backend/launch/shape_ops.hpp"

namespace mentor {

namespace cuda::kernels {
namespace {

// Offset in x [outer, dim_size, inner] of element i of index_select's output [outer, count, inner].
__device__ __forceinline__ int64_t selected_offset(int64_t i, const int64_t* __restrict__ ids,
                                                   int64_t dim_size, int64_t count, int64_t inner) {
  const int64_t j = i % inner, k = (i / inner) % count, o = i / (inner * count);
  return (o * dim_size + ids[k]) * inner + j;
}

template <class E>
__global__ void index_select_kernel(const E* __restrict__ x, const int64_t* __restrict__ ids,
                                    E* __restrict__ out, int64_t total, int64_t dim_size,
                                    int64_t count, int64_t inner) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = x[selected_offset(i, ids, dim_size, count, inner)];
}

template <class T>
__global__ void index_add_kernel(const T* __restrict__ g, const int64_t* __restrict__ ids,
                                 float* __restrict__ accum, int64_t total, int64_t dim_size,
                                 int64_t count, int64_t inner) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x)
    atomicAdd(accum + selected_offset(i, ids, dim_size, count, inner), to_acc(g[i]));
}

// A gather's walk over ids: `rest` maps the position of an id (row-major over ids' shape) to the
// offset in x (contiguous) of its coordinates on every axis but the gathered one (stride 0 there);
// the id itself adds id · dim_stride.
struct GatherGeometry {
  Indexer<1, int64_t> rest;
  int64_t dim_stride;
};

__device__ __forceinline__ int64_t gather_offset(const GatherGeometry& g, int64_t linear,
                                                 int64_t index) {
  int64_t off[1];
  g.rest.offsets(linear, off);
  return off[0] + index * g.dim_stride;
}

template <class E>
__global__ void gather_kernel(const E* __restrict__ x, const int64_t* __restrict__ ids,
                              E* __restrict__ out, int64_t total, GatherGeometry g) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = x[gather_offset(g, i, ids[i])];
}

template <class T>
__global__ void scatter_add_kernel(const T* __restrict__ g_out, const int64_t* __restrict__ ids,
                                   float* __restrict__ accum, int64_t total, GatherGeometry g) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x)
    atomicAdd(accum + gather_offset(g, i, ids[i]), to_acc(g_out[i]));
}

// Operands: 0 cond, 1 a, 2 b, 3 out.
template <class E, class Index>
__global__ void where_kernel(const bool* __restrict__ cond, const E* __restrict__ a,
                             const E* __restrict__ b, E* __restrict__ out,
                             Indexer<4, Index> indexer, Index n) {
  indexer.for_each(
      n, [&](Index, const Index(&off)[4]) { out[off[3]] = cond[off[0]] ? a[off[1]] : b[off[2]]; });
}

// The bits of an element: copies and selections never convert.
template <class T>
using Bits =
    std::conditional_t<sizeof(T) == 1, uint8_t,
                       std::conditional_t<sizeof(T) == 2, uint16_t,
                                          std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>>>;

GatherGeometry gather_geometry(const Shape& x_shape, const Shape& ids_shape, int dim) {
  Strides rest_strides = contiguous_strides(x_shape);
  const int64_t dim_stride = rest_strides[dim];
  rest_strides[dim] = 0;
  return {Indexer<1, int64_t>(coalesce<1>(ids_shape, {&rest_strides})), dim_stride};
}

}  // namespace
}  // namespace cuda::kernels

template <class T>
void cuda::index_select(const T* x, const int64_t* ids, T* out, int64_t outer, int64_t dim_size,
                        int64_t count, int64_t inner) {
  using E = cuda::kernels::Bits<T>;
  const int64_t total = outer * count * inner;
  if (total <= 0) return;
  cuda::kernels::index_select_kernel<E><<<cuda::grid_blocks(total, 256), 256, 0, cuda::stream()>>>(
      reinterpret_cast<const E*>(x), ids, reinterpret_cast<E*>(out), total, dim_size, count, inner);
  MENTOR_CUDA_CHECK_LAUNCH("index_select_kernel");
}

template <class T>
void cuda::index_add(const T* grad_out, const int64_t* ids, T* grad_x, int64_t outer,
                     int64_t dim_size, int64_t count, int64_t inner) {
  using DT = cuda::device_t<T>;
  const int64_t total = outer * count * inner;
  if (total <= 0) return;
  cuda::ScatterTarget<DT> target(cuda::device_ptr(grad_x), outer * dim_size * inner);
  cuda::kernels::index_add_kernel<DT><<<cuda::grid_blocks(total, 256), 256, 0, cuda::stream()>>>(
      cuda::device_ptr(grad_out), ids, target.accum(), total, dim_size, count, inner);
  MENTOR_CUDA_CHECK_LAUNCH("index_add_kernel");
  target.finish();
}

template <class T>
void cuda::gather(const T* x, const Shape& x_shape, const int64_t* ids, const Shape& ids_shape,
                  int dim, T* out) {
  using E = cuda::kernels::Bits<T>;
  const int64_t total = ids_shape.numel();
  if (total <= 0) return;
  cuda::kernels::gather_kernel<E><<<cuda::grid_blocks(total, 256), 256, 0, cuda::stream()>>>(
      reinterpret_cast<const E*>(x), ids, reinterpret_cast<E*>(out), total,
      cuda::kernels::gather_geometry(x_shape, ids_shape, dim));
  MENTOR_CUDA_CHECK_LAUNCH("gather_kernel");
}

template <class T>
void cuda::scatter_add(const T* grad_out, const int64_t* ids, const Shape& ids_shape, int dim,
                       T* grad_x, const Shape& x_shape) {
  using DT = cuda::device_t<T>;
  const int64_t total = ids_shape.numel();
  if (total <= 0) return;
  cuda::ScatterTarget<DT> target(cuda::device_ptr(grad_x), x_shape.numel());
  cuda::kernels::scatter_add_kernel<DT><<<cuda::grid_blocks(total, 256), 256, 0, cuda::stream()>>>(
      cuda::device_ptr(grad_out), ids, target.accum(), total,
      cuda::kernels::gather_geometry(x_shape, ids_shape, dim));
  MENTOR_CUDA_CHECK_LAUNCH("scatter_add_kernel");
  target.finish();
}

template <class T>
void cuda::where(const bool* cond, const Strides& cond_strides, const T* a,
                 const Strides& a_strides, const T* b, const Strides& b_strides, T* out,
                 const Shape& shape) {
  using E = cuda::kernels::Bits<T>;
  const Strides out_strides = contiguous_strides(shape);
  cuda::StridedGeometry<4> g =
      cuda::coalesce<4>(shape, {&cond_strides, &a_strides, &b_strides, &out_strides});
  if (g.numel <= 0) return;
  const unsigned blocks = cuda::grid_blocks(g.numel, 256);
  const E* pa = reinterpret_cast<const E*>(a);
  const E* pb = reinterpret_cast<const E*>(b);
  E* po = reinterpret_cast<E*>(out);
  if (g.fits_32bit()) {
    cuda::kernels::where_kernel<E, uint32_t><<<blocks, 256, 0, cuda::stream()>>>(
        cond, pa, pb, po, cuda::Indexer<4, uint32_t>(g), static_cast<uint32_t>(g.numel));
  } else {
    cuda::kernels::where_kernel<E, uint64_t><<<blocks, 256, 0, cuda::stream()>>>(
        cond, pa, pb, po, cuda::Indexer<4, uint64_t>(g), static_cast<uint64_t>(g.numel));
  }
  MENTOR_CUDA_CHECK_LAUNCH("where_kernel");
}

#define MENTOR_INSTANTIATE_SELECT(T)                                                            \
  template void cuda::index_select<T>(const T*, const int64_t*, T*, int64_t, int64_t, int64_t,  \
                                      int64_t);                                                 \
  template void cuda::gather<T>(const T*, const Shape&, const int64_t*, const Shape&, int, T*); \
  template void cuda::where<T>(const bool*, const Strides&, const T*, const Strides&, const T*, \
                               const Strides&, T*, const Shape&);
MENTOR_INSTANTIATE_SELECT(float)
MENTOR_INSTANTIATE_SELECT(double)
MENTOR_INSTANTIATE_SELECT(bf16)
MENTOR_INSTANTIATE_SELECT(int32_t)
MENTOR_INSTANTIATE_SELECT(int64_t)
MENTOR_INSTANTIATE_SELECT(uint8_t)
MENTOR_INSTANTIATE_SELECT(bool)
#undef MENTOR_INSTANTIATE_SELECT

#define MENTOR_INSTANTIATE_SCATTER(T)                                                       \
  template void cuda::index_add<T>(const T*, const int64_t*, T*, int64_t, int64_t, int64_t, \
                                   int64_t);                                                \
  template void cuda::scatter_add<T>(const T*, const int64_t*, const Shape&, int, T*, const Shape&);
MENTOR_INSTANTIATE_SCATTER(float)
MENTOR_INSTANTIATE_SCATTER(bf16)
#undef MENTOR_INSTANTIATE_SCATTER

}  // namespace mentor
