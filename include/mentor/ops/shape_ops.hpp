#pragma once
// Joining, splitting and indexing: concat, stack, split, chunk, index_select, gather, masked_fill,
// where. They work for every element type (concat of int64 ids, where on masks, ...); gradients are
// recorded only for floating types. split and chunk return narrow views (no copy).
//
// Index tensors are validated on the host before any kernel runs (a CUDA index tensor is copied
// back for that: indices are small), so an out-of-range index is a mentor::Error naming the index
// and the size, never a wild read.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/backend/launch/shape_ops.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/ops/dispatch.hpp"

namespace mentor {

namespace cpu::shape_ops_detail {
// Calls fn(offset_c, offset_a, offset_b) for every index of `shape` in row-major order.
template <class F>
void for_each_offset3(const Shape& shape, const Strides& sc, const Strides& sa, const Strides& sb,
                      F&& fn) {
  const int rank = shape.rank();
  if (shape.numel() == 0) return;
  if (rank == 0) {
    fn(int64_t{0}, int64_t{0}, int64_t{0});
    return;
  }
  const int64_t inner = shape[rank - 1], ic = sc[rank - 1], ia = sa[rank - 1], ib = sb[rank - 1];
  const int64_t outer = shape.numel() / inner;
  int64_t index[kMaxRank] = {};
  int64_t base_c = 0, base_a = 0, base_b = 0;
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t j = 0; j < inner; ++j) fn(base_c + j * ic, base_a + j * ia, base_b + j * ib);
    for (int d = rank - 2; d >= 0; --d) {
      ++index[d];
      base_c += sc[d], base_a += sa[d], base_b += sb[d];
      if (index[d] < shape[d]) break;
      base_c -= sc[d] * shape[d], base_a -= sa[d] * shape[d], base_b -= sb[d] * shape[d];
      index[d] = 0;
    }
  }
}

// Product of shape[begin, end).
inline int64_t span_numel(const Shape& shape, int begin, int end) {
  int64_t n = 1;
  for (int i = begin; i < end; ++i) n *= shape[i];
  return n;
}
}  // namespace cpu::shape_ops_detail

namespace detail {
// Host copy of an index tensor, each index checked against [0, limit).
template <class D>
std::vector<int64_t> checked_indices(const Tensor<int64_t, D>& ids, int64_t limit, const char* op,
                                     const Shape& x_shape, int axis) {
  std::vector<int64_t> host = ids.to_vector();
  for (int64_t id : host) {
    MENTOR_CHECK_SHAPE(id >= 0 && id < limit, op, ": index ", id, " is out of range for dimension ",
                       axis, " of size ", limit, " (input shape ", x_shape.str(), ")");
  }
  return host;
}

// The most inputs one recorded concat node takes; longer lists are concatenated in groups.
inline constexpr size_t kConcatMaxInputs = 8;

template <size_t N, class T, class D>
void record_concat(Tensor<T, D>& out, const std::vector<Tensor<T, D>>& parts, int axis) {
  std::array<int64_t, N> starts{}, lengths{};
  int64_t offset = 0;
  for (size_t i = 0; i < N; ++i) {
    starts[i] = offset;
    lengths[i] = parts[i].size(axis);
    offset += lengths[i];
  }
  [&]<size_t... I>(std::index_sequence<I...>) {
    autograd::record(
        "concat", out,
        [starts, lengths, axis](const Tensor<T, D>& grad) {
          return std::make_tuple(grad.narrow(axis, starts[I], lengths[I])...);
        },
        parts[I]...);
  }
  (std::make_index_sequence<N>{});
}

template <class T, class D, size_t... N>
void record_concat_n(Tensor<T, D>& out, const std::vector<Tensor<T, D>>& parts, int axis,
                     std::index_sequence<N...>) {
  // N + 1 inputs for each N in [0, kConcatMaxInputs).
  ((parts.size() == N + 1 ? record_concat<N + 1>(out, parts, axis) : void()), ...);
}
}  // namespace detail

// Joins tensors along `dim`; every other dimension must match.
template <Element T, class D>
Tensor<T, D> concat(const std::vector<Tensor<T, D>>& parts, int64_t dim) {
  MENTOR_CHECK(!parts.empty(), "concat: no tensors to join");
  const Shape& first = parts[0].shape();
  MENTOR_CHECK_SHAPE(first.rank() >= 1, "concat: cannot join 0-dimensional tensors (shape ",
                     first.str(), "); use stack");
  const int axis = wrap_dim(dim, first.rank(), "concat");
  if (parts.size() > detail::kConcatMaxInputs) {
    std::vector<Tensor<T, D>> groups;
    for (size_t i = 0; i < parts.size(); i += detail::kConcatMaxInputs) {
      size_t end = std::min(parts.size(), i + detail::kConcatMaxInputs);
      groups.push_back(
          concat(std::vector<Tensor<T, D>>(parts.begin() + i, parts.begin() + end), axis));
    }
    return concat(groups, axis);
  }
  Shape shape = first;
  shape[axis] = 0;
  for (const auto& part : parts) {
    bool matches = part.dim() == first.rank();
    for (int d = 0; matches && d < first.rank(); ++d)
      matches = d == axis || part.size(d) == first[d];
    MENTOR_CHECK_SHAPE(matches, "concat: shape ", part.shape().str(), " does not match ",
                       first.str(), " outside dimension ", axis);
    shape[axis] += part.size(axis);
  }
  Tensor<T, D> out = Tensor<T, D>::empty(shape);
  const int64_t outer = cpu::shape_ops_detail::span_numel(shape, 0, axis);
  const int64_t rest = cpu::shape_ops_detail::span_numel(shape, axis + 1, shape.rank());
  int64_t offset = 0;
  for (const auto& part : parts) {
    const int64_t length = part.size(axis);
    if constexpr (std::is_same_v<D, CPU>) {
      if (part.is_contiguous()) {  // one memcpy per outer index
        const T* src = part.data();
        T* dst = out.data() + offset * rest;
        const int64_t block = length * rest, out_block = shape[axis] * rest;
        for (int64_t o = 0; o < outer; ++o)
          if (block) std::memcpy(dst + o * out_block, src + o * block, sizeof(T) * block);
        offset += length;
        continue;
      }
    }
    Tensor<T, D> target = out.narrow(axis, offset, length);
    mentor::detail::DeviceOps<D>::copy_strided(part.data(), part.strides(), target.data(),
                                               target.strides(), part.shape());
    offset += length;
  }
  if constexpr (is_floating_v<T>) {
    detail::record_concat_n(out, parts, axis, std::make_index_sequence<detail::kConcatMaxInputs>{});
  }
  return out;
}

// Joins equally shaped tensors along a new dimension `dim`.
template <Element T, class D>
Tensor<T, D> stack(const std::vector<Tensor<T, D>>& parts, int64_t dim) {
  MENTOR_CHECK(!parts.empty(), "stack: no tensors to stack");
  const int axis = wrap_dim(dim < 0 ? dim + parts[0].dim() + 1 : dim, parts[0].dim() + 1, "stack");
  std::vector<Tensor<T, D>> expanded;
  expanded.reserve(parts.size());
  for (const auto& part : parts) {
    MENTOR_CHECK_SHAPE(part.shape() == parts[0].shape(), "stack: shape ", part.shape().str(),
                       " differs from ", parts[0].shape().str());
    expanded.push_back(part.unsqueeze(axis));
  }
  return concat(expanded, axis);
}

// Views of consecutive pieces of `sizes` along `dim`; the sizes must add up to x.size(dim).
template <Element T, class D>
std::vector<Tensor<T, D>> split(const Tensor<T, D>& x, const std::vector<int64_t>& sizes,
                                int64_t dim) {
  MENTOR_CHECK_SHAPE(x.dim() >= 1, "split: cannot split a 0-dimensional tensor");
  const int axis = wrap_dim(dim, x.dim(), "split");
  int64_t total = 0;
  for (int64_t s : sizes) {
    MENTOR_CHECK_SHAPE(s >= 0, "split: negative piece size ", s, " for shape ", x.shape().str());
    total += s;
  }
  MENTOR_CHECK_SHAPE(total == x.size(axis), "split: sizes add up to ", total, " but dimension ",
                     axis, " of shape ", x.shape().str(), " has ", x.size(axis));
  std::vector<Tensor<T, D>> pieces;
  int64_t offset = 0;
  for (int64_t s : sizes) {
    pieces.push_back(x.narrow(axis, offset, s));
    offset += s;
  }
  return pieces;
}

// torch.chunk: pieces of ceil(size / n) along `dim` (the last may be smaller, and there may be
// fewer than n pieces).
template <Element T, class D>
std::vector<Tensor<T, D>> chunk(const Tensor<T, D>& x, int64_t n, int64_t dim) {
  MENTOR_CHECK(n >= 1, "chunk: number of chunks must be positive, got ", n);
  MENTOR_CHECK_SHAPE(x.dim() >= 1, "chunk: cannot split a 0-dimensional tensor");
  const int axis = wrap_dim(dim, x.dim(), "chunk");
  const int64_t size = x.size(axis);
  const int64_t piece = (size + n - 1) / n;
  std::vector<int64_t> sizes;
  if (piece == 0) {
    sizes.push_back(0);
  } else {
    for (int64_t offset = 0; offset < size; offset += piece)
      sizes.push_back(std::min(piece, size - offset));
  }
  return split(x, sizes, axis);
}

namespace cpu {
template <class T>
void index_select(const T* x, const int64_t* ids, T* out, int64_t outer, int64_t dim_size,
                  int64_t count, int64_t inner) {
  parallel_for(outer * count, std::max<int64_t>(1, 4096 / std::max<int64_t>(inner, 1)),
               [&](int64_t begin, int64_t end) {
                 for (int64_t r = begin; r < end; ++r) {
                   const int64_t o = r / count, j = r % count;
                   std::memcpy(out + r * inner, x + (o * dim_size + ids[j]) * inner,
                               sizeof(T) * inner);
                 }
               });
}

template <class T>
void index_add(const T* grad_out, const int64_t* ids, T* grad_x, int64_t outer, int64_t dim_size,
               int64_t count, int64_t inner) {
  // Parallel over `outer` only: repeated ids within one outer slice write the same rows.
  parallel_for(outer, 1, [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      for (int64_t j = 0; j < count; ++j) {
        const T* src = grad_out + (o * count + j) * inner;
        T* dst = grad_x + (o * dim_size + ids[j]) * inner;
        for (int64_t i = 0; i < inner; ++i)
          dst[i] = static_cast<T>(static_cast<acc_t<T>>(dst[i]) + static_cast<acc_t<T>>(src[i]));
      }
    }
  });
}

// x contiguous of x_shape; the odometer walks ids' shape with x's strides, the gathered axis
// contributing through the index instead of the position.
template <class T>
void gather(const T* x, const Shape& x_shape, const int64_t* ids, const Shape& ids_shape, int dim,
            T* out) {
  Strides x_strides = contiguous_strides(x_shape);
  const int64_t axis_stride = x_strides[dim];
  x_strides[dim] = 0;
  for_each_offset2(ids_shape, x_strides, contiguous_strides(ids_shape),
                   [&](int64_t ox, int64_t oi) { out[oi] = x[ox + ids[oi] * axis_stride]; });
}

template <class T>
void scatter_add(const T* grad_out, const int64_t* ids, const Shape& ids_shape, int dim, T* grad_x,
                 const Shape& x_shape) {
  Strides x_strides = contiguous_strides(x_shape);
  const int64_t axis_stride = x_strides[dim];
  x_strides[dim] = 0;
  for_each_offset2(
      ids_shape, x_strides, contiguous_strides(ids_shape), [&](int64_t ox, int64_t oi) {
        T& dst = grad_x[ox + ids[oi] * axis_stride];
        dst = static_cast<T>(static_cast<acc_t<T>>(dst) + static_cast<acc_t<T>>(grad_out[oi]));
      });
}

template <class T>
void where(const bool* cond, const Strides& cond_strides, const T* a, const Strides& a_strides,
           const T* b, const Strides& b_strides, T* out, const Shape& shape) {
  int64_t i = 0;
  shape_ops_detail::for_each_offset3(
      shape, cond_strides, a_strides, b_strides,
      [&](int64_t oc, int64_t oa, int64_t ob) { out[i++] = cond[oc] ? a[oa] : b[ob]; });
}
}  // namespace cpu

// Rows of x along `dim` picked by the 1-D index tensor ids: out.size(dim) == ids.numel().
template <Element T, class D>
Tensor<T, D> index_select(const Tensor<T, D>& x, int64_t dim, const Tensor<int64_t, D>& ids) {
  MENTOR_CHECK_SHAPE(x.dim() >= 1, "index_select: input must have at least one dimension");
  const int axis = wrap_dim(dim, x.dim(), "index_select");
  MENTOR_CHECK_SHAPE(ids.dim() <= 1, "index_select: indices must be 1-D, got ", ids.shape().str());
  const int64_t dim_size = x.size(axis), count = ids.numel();
  std::vector<int64_t> host =
      detail::checked_indices(ids, dim_size, "index_select", x.shape(), axis);
  const int64_t outer = cpu::shape_ops_detail::span_numel(x.shape(), 0, axis);
  const int64_t inner = cpu::shape_ops_detail::span_numel(x.shape(), axis + 1, x.dim());
  Shape shape = x.shape();
  shape[axis] = count;
  Tensor<T, D> src = x.contiguous_nograd();
  Tensor<T, D> out = Tensor<T, D>::empty(shape);
  Tensor<int64_t, D> ids_c = ids.contiguous_nograd();
  if constexpr (std::is_same_v<D, CPU>) {
    cpu::index_select(src.data(), host.data(), out.data(), outer, dim_size, count, inner);
  } else {
    MENTOR_CUDA_CALL(
        cuda::index_select<T>(src.data(), ids_c.data(), out.data(), outer, dim_size, count, inner));
  }
  if constexpr (is_floating_v<T>) {
    autograd::record(
        "index_select", out,
        [in_shape = x.shape(), ids_c, outer, dim_size, count, inner](const Tensor<T, D>& grad) {
          Tensor<T, D> gc = grad.contiguous_nograd();
          Tensor<T, D> gx = Tensor<T, D>::zeros(in_shape);
          if constexpr (std::is_same_v<D, CPU>) {
            cpu::index_add(gc.data(), ids_c.data(), gx.data(), outer, dim_size, count, inner);
          } else {
            MENTOR_CUDA_CALL(cuda::index_add<T>(gc.data(), ids_c.data(), gx.data(), outer, dim_size,
                                                count, inner));
          }
          return std::tuple{gx, autograd::NoGrad{}};
        },
        x, ids);
  }
  return out;
}

// torch.gather: out has ids' shape, out[i][j][k] = x[i][ids[i][j][k]][k] for dim = 1.
template <Element T, class D>
Tensor<T, D> gather(const Tensor<T, D>& x, int64_t dim, const Tensor<int64_t, D>& ids) {
  MENTOR_CHECK_SHAPE(x.dim() >= 1, "gather: input must have at least one dimension");
  const int axis = wrap_dim(dim, x.dim(), "gather");
  bool fits = ids.dim() == x.dim();
  for (int d = 0; fits && d < x.dim(); ++d) fits = d == axis || ids.size(d) <= x.size(d);
  MENTOR_CHECK_SHAPE(fits, "gather: indices of shape ", ids.shape().str(),
                     " do not fit input of shape ", x.shape().str(), " along dimension ", axis);
  detail::checked_indices(ids, x.size(axis), "gather", x.shape(), axis);
  Tensor<T, D> src = x.contiguous_nograd();
  Tensor<int64_t, D> ids_c = ids.contiguous_nograd();
  Tensor<T, D> out = Tensor<T, D>::empty(ids.shape());
  if constexpr (std::is_same_v<D, CPU>) {
    cpu::gather(src.data(), x.shape(), ids_c.data(), ids.shape(), axis, out.data());
  } else {
    MENTOR_CUDA_CALL(
        cuda::gather<T>(src.data(), x.shape(), ids_c.data(), ids.shape(), axis, out.data()));
  }
  if constexpr (is_floating_v<T>) {
    autograd::record(
        "gather", out,
        [in_shape = x.shape(), ids_c, axis](const Tensor<T, D>& grad) {
          Tensor<T, D> gc = grad.contiguous_nograd();
          Tensor<T, D> gx = Tensor<T, D>::zeros(in_shape);
          if constexpr (std::is_same_v<D, CPU>) {
            cpu::scatter_add(gc.data(), ids_c.data(), ids_c.shape(), axis, gx.data(), in_shape);
          } else {
            MENTOR_CUDA_CALL(cuda::scatter_add<T>(gc.data(), ids_c.data(), ids_c.shape(), axis,
                                                  gx.data(), in_shape));
          }
          return std::tuple{gx, autograd::NoGrad{}};
        },
        x, ids);
  }
  return out;
}

namespace detail {
// cond ? a : b with all three broadcast to `shape` (no history).
template <class T, class D>
Tensor<T, D> where_forward(const Tensor<bool, D>& cond, const Tensor<T, D>& a,
                           const Tensor<T, D>& b, const Shape& shape) {
  Tensor<bool, D> ec = cond.expand(shape);
  Tensor<T, D> ea = a.detach().expand(shape), eb = b.detach().expand(shape);
  Tensor<T, D> out = Tensor<T, D>::empty(shape);
  if constexpr (std::is_same_v<D, CPU>) {
    cpu::where(ec.data(), ec.strides(), ea.data(), ea.strides(), eb.data(), eb.strides(),
               out.data(), shape);
  } else {
    MENTOR_CUDA_CALL(cuda::where<T>(ec.data(), ec.strides(), ea.data(), ea.strides(), eb.data(),
                                    eb.strides(), out.data(), shape));
  }
  return out;
}
}  // namespace detail

// Elementwise cond ? a : b with NumPy broadcasting of all three.
template <Element T, class D>
Tensor<T, D> where(const Tensor<bool, D>& cond, const Tensor<T, D>& a, const Tensor<T, D>& b) {
  MENTOR_CHECK_SHAPE(cond.defined() && a.defined() && b.defined(),
                     "where: condition and both branches must be defined");
  Shape shape =
      broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  Tensor<T, D> out = detail::where_forward(cond, a, b, shape);
  if constexpr (is_floating_v<T>) {
    autograd::record(
        "where", out,
        [cond, sa = a.shape(), sb = b.shape()](const Tensor<T, D>& grad,
                                               const std::array<bool, 3>& needs) {
          Tensor<T, D> zero = Tensor<T, D>::zeros(Shape{});
          Tensor<T, D> ga, gb;
          if (needs[1]) ga = sum_to(detail::where_forward(cond, grad, zero, grad.shape()), sa);
          if (needs[2]) gb = sum_to(detail::where_forward(cond, zero, grad, grad.shape()), sb);
          return std::tuple{autograd::NoGrad{}, ga, gb};
        },
        cond, a, b);
  }
  return out;
}

// x with `value` wherever mask (broadcast to x's shape) is true.
template <Element T, class D>
Tensor<T, D> masked_fill(const Tensor<T, D>& x, const Tensor<bool, D>& mask, double value) {
  Shape shape = broadcast_shapes(x.shape(), mask.shape(), "masked_fill");
  MENTOR_CHECK_SHAPE(shape == x.shape(), "masked_fill: mask of shape ", mask.shape().str(),
                     " does not broadcast to the input's shape ", x.shape().str());
  Tensor<T, D> fill = Tensor<T, D>::full(Shape{}, convert_element<T>(value));
  Tensor<T, D> out = detail::where_forward(mask, fill, x, shape);
  if constexpr (is_floating_v<T>) {
    autograd::record(
        "masked_fill", out,
        [mask](const Tensor<T, D>& grad) {
          Tensor<T, D> zero = Tensor<T, D>::zeros(Shape{});
          return std::tuple{detail::where_forward(mask, zero, grad, grad.shape()),
                            autograd::NoGrad{}};
        },
        x, mask);
  }
  return out;
}

}  // namespace mentor
