#pragma once
// The one host walker over strided views: the CPU side of contiguous(), copies into views, the
// broadcast-reduction used by gradients of broadcasting ops, and every CPU kernel that reads
// broadcast or strided inputs (binary ops, where, gather).
#include <cstddef>
#include <cstdint>
#include <utility>

#include "mentor/core/dtype.hpp"
#include "mentor/core/shape.hpp"

namespace mentor::cpu {

namespace strided_detail {
template <size_t N, class F, size_t... K>
void walk(const Shape& shape, const Strides (&strides)[N], F& fn, std::index_sequence<K...>) {
  const int rank = shape.rank();
  if (shape.numel() == 0) return;
  if (rank == 0) {
    fn((void(K), int64_t{0})...);
    return;
  }
  const int64_t inner = shape[rank - 1];
  const int64_t step[N] = {strides[K][rank - 1]...};
  const int64_t outer = shape.numel() / inner;
  int64_t index[kMaxRank] = {};
  int64_t base[N] = {};
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t j = 0; j < inner; ++j) fn((base[K] + j * step[K])...);
    for (int d = rank - 2; d >= 0; --d) {  // odometer increment over the outer dimensions
      ++index[d];
      ((base[K] += strides[K][d]), ...);
      if (index[d] < shape[d]) break;
      ((base[K] -= strides[K][d] * shape[d]), ...);
      index[d] = 0;
    }
  }
}
}  // namespace strided_detail

// Calls fn(offset_0, ..., offset_{N-1}) for every index of `shape` in row-major order, offset_k in
// elements into the k-th of N strided views (strides[k]):
//   for_each_offsets(shape, {src_strides, dst_strides}, [&](int64_t s, int64_t d) { ... });
// The innermost dimension runs as a tight loop.
template <size_t N, class F>
void for_each_offsets(const Shape& shape, const Strides (&strides)[N], F&& fn) {
  static_assert(N >= 1, "for_each_offsets: walk at least one view");
  strided_detail::walk(shape, strides, fn, std::make_index_sequence<N>{});
}

template <class T>
void copy_strided(const T* src, const Strides& src_strides, T* dst, const Strides& dst_strides,
                  const Shape& shape) {
  for_each_offsets(shape, {src_strides, dst_strides},
                   [&](int64_t so, int64_t d) { dst[d] = src[so]; });
}

template <class T>
void add_strided(const T* src, const Strides& src_strides, T* dst, const Strides& dst_strides,
                 const Shape& shape) {
  for_each_offsets(shape, {src_strides, dst_strides}, [&](int64_t so, int64_t d) {
    dst[d] = static_cast<T>(static_cast<acc_t<T>>(dst[d]) + static_cast<acc_t<T>>(src[so]));
  });
}

}  // namespace mentor::cpu
