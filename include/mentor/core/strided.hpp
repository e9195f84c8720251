#pragma once
// Host loops over strided views: the CPU side of contiguous(), copies into views and the
// broadcast-reduction used by gradients of broadcasting ops.
#include <cstdint>

#include "mentor/core/dtype.hpp"
#include "mentor/core/shape.hpp"

namespace mentor::cpu {

// Calls fn(offset_a, offset_b) for every index of `shape` in row-major order, with offsets in
// elements into two strided views. The innermost dimension runs as a tight loop.
template <class F>
void for_each_offset2(const Shape& shape, const Strides& sa, const Strides& sb, F&& fn) {
  int rank = shape.rank();
  if (shape.numel() == 0) return;
  if (rank == 0) {
    fn(int64_t{0}, int64_t{0});
    return;
  }
  int64_t inner = shape[rank - 1], ia = sa[rank - 1], ib = sb[rank - 1];
  int64_t outer = shape.numel() / inner;
  int64_t index[kMaxRank] = {};
  int64_t base_a = 0, base_b = 0;
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t j = 0; j < inner; ++j) fn(base_a + j * ia, base_b + j * ib);
    for (int d = rank - 2; d >= 0; --d) {  // odometer increment over the outer dimensions
      ++index[d];
      base_a += sa[d];
      base_b += sb[d];
      if (index[d] < shape[d]) break;
      base_a -= sa[d] * shape[d];
      base_b -= sb[d] * shape[d];
      index[d] = 0;
    }
  }
}

template <class T>
void copy_strided(const T* src, const Strides& src_strides, T* dst, const Strides& dst_strides,
                  const Shape& shape) {
  for_each_offset2(shape, src_strides, dst_strides,
                   [&](int64_t so, int64_t d) { dst[d] = src[so]; });
}

template <class T>
void add_strided(const T* src, const Strides& src_strides, T* dst, const Strides& dst_strides,
                 const Shape& shape) {
  for_each_offset2(shape, src_strides, dst_strides, [&](int64_t so, int64_t d) {
    dst[d] = static_cast<T>(static_cast<acc_t<T>>(dst[d]) + static_cast<acc_t<T>>(src[so]));
  });
}

}  // namespace mentor::cpu
