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
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/backend/launch/shape_ops.hpp"
#include "mentor/core/strided.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/ops/apply.hpp"

namespace mentor {

namespace cpu {
// Copies a contiguous [outer, block] part into the rows of a contiguous [outer, out_block] output,
// one memcpy per outer index.
template <class T>
void concat_part(const T* src, T* dst, int64_t outer, int64_t block, int64_t out_block) {
  if (block == 0) return;
  for (int64_t o = 0; o < outer; ++o)
    std::memcpy(dst + o * out_block, src + o * block, sizeof(T) * block);
}

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

// x contiguous of x_shape; the walker follows ids' shape with x's strides, the gathered axis
// contributing through the index instead of the position.
template <class T>
void gather(const T* x, const Shape& x_shape, const int64_t* ids, const Shape& ids_shape, int dim,
            T* out) {
  Strides x_strides = contiguous_strides(x_shape);
  const int64_t axis_stride = x_strides[dim];
  x_strides[dim] = 0;
  for_each_offsets(ids_shape, {x_strides, contiguous_strides(ids_shape)},
                   [&](int64_t ox, int64_t oi) { out[oi] = x[ox + ids[oi] * axis_stride]; });
}

template <class T>
void scatter_add(const T* grad_out, const int64_t* ids, const Shape& ids_shape, int dim, T* grad_x,
                 const Shape& x_shape) {
  Strides x_strides = contiguous_strides(x_shape);
  const int64_t axis_stride = x_strides[dim];
  x_strides[dim] = 0;
  for_each_offsets(
      ids_shape, {x_strides, contiguous_strides(ids_shape)}, [&](int64_t ox, int64_t oi) {
        T& dst = grad_x[ox + ids[oi] * axis_stride];
        dst = static_cast<T>(static_cast<acc_t<T>>(dst) + static_cast<acc_t<T>>(grad_out[oi]));
      });
}

template <class T>
void where(const bool* cond, const Strides& cond_strides, const T* a, const Strides& a_strides,
           const T* b, const Strides& b_strides, T* out, const Shape& shape) {
  int64_t i = 0;
  for_each_offsets(
      shape, {cond_strides, a_strides, b_strides},
      [&](int64_t oc, int64_t oa, int64_t ob) { out[i++] = cond[oc] ? a[oa] : b[ob]; });
}
}  // namespace cpu

namespace detail {
// Product of shape[begin, end).
inline int64_t span_numel(const Shape& shape, int begin, int end) {
  int64_t n = 1;
  for (int i = begin; i < end; ++i) n *= shape[i];
  return n;
}

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

// The strides of x broadcast to `shape` (0 along broadcast dimensions).
template <class X>
Strides broadcast_strides(const X& x, const Shape& shape) {
  return x.detach().expand(shape).strides();
}

// The CUDA kernels of index_select and gather exist for every element type, but the scatter kernels
// of their backward only for float and bf16: a floating type needs both (src/cuda/shape_ops.cu).
template <class T>
inline constexpr bool indexing_cuda_type = has_cuda_kernels_v<T> || !is_floating_v<T>;

// The most inputs one concat op takes; longer lists are concatenated in groups.
inline constexpr size_t kConcatMaxInputs = 8;
}  // namespace detail

// Joins N tensors along `axis` (valid for the first; concat() checks it); every other dimension
// must match. The parts are copied as they are (strided), and the backward hands each its slice
// of the gradient (views, no copy).
template <size_t N>
struct Concat {
  static constexpr OpSaves saves = OpSaves::None;
  static constexpr bool composite_backward = true;
  static constexpr bool strided_inputs = true;
  template <class T>
  static constexpr bool cuda_type = is_element_v<T>;  // a strided copy: every element type
  int axis;
  std::array<int64_t, N> starts{}, lengths{};

  const char* name() const { return "concat"; }
  template <class... Parts>
  Shape output_shape(const Parts&... part_list) {
    static_assert(sizeof...(Parts) == N);
    const std::array parts{&part_list...};
    const Shape& first = parts[0]->shape();
    Shape shape = first;
    shape[axis] = 0;
    for (size_t i = 0; i < N; ++i) {
      const auto& part = *parts[i];
      bool matches = part.dim() == first.rank();
      for (int d = 0; matches && d < first.rank(); ++d)
        matches = d == axis || part.size(d) == first[d];
      MENTOR_CHECK_SHAPE(matches, "concat: shape ", part.shape().str(), " does not match ",
                         first.str(), " outside dimension ", axis);
      starts[i] = shape[axis];
      lengths[i] = part.size(axis);
      shape[axis] += lengths[i];
    }
    return shape;
  }
  // Arguments: the N parts, then the output.
  template <class... Args>
  void forward_cpu(Args&... args) const {
    copy_parts(std::tie(args...), std::make_index_sequence<N>{});
  }
  template <class... Args>
  void forward_cuda(Args&... args) const {
    copy_parts(std::tie(args...), std::make_index_sequence<N>{});
  }
  // Arguments: the N parts, the output, its gradient, which inputs need one.
  template <class... Args>
  auto backward(const Args&... args) const {
    return slices(std::get<N + 1>(std::tie(args...)), std::make_index_sequence<N>{});
  }

 private:
  template <class Tuple, size_t... I>
  void copy_parts(const Tuple& args, std::index_sequence<I...>) const {
    (copy_part(std::get<I>(args), std::get<N>(args), I), ...);
  }
  // On the CPU a contiguous part is one memcpy per outer index, any other a strided copy into its
  // slice of the output.
  template <class T>
  void copy_part(const Tensor<T, CPU>& part, Tensor<T, CPU>& out, size_t i) const {
    const Shape& shape = out.shape();
    if (part.is_contiguous()) {
      const int64_t rest = detail::span_numel(shape, axis + 1, shape.rank());
      cpu::concat_part(part.data(), out.data() + starts[i] * rest,
                       detail::span_numel(shape, 0, axis), lengths[i] * rest, shape[axis] * rest);
    } else {
      cpu::copy_strided(part.data(), part.strides(), out.data() + starts[i] * out.strides()[axis],
                        out.strides(), part.shape());
    }
  }
  template <class T>
  void copy_part(const Tensor<T, CUDA>& part, Tensor<T, CUDA>& out, size_t i) const {
    detail::DeviceOps<CUDA>::copy_strided(part.data(), part.strides(),
                                          out.data() + starts[i] * out.strides()[axis],
                                          out.strides(), part.shape());
  }
  template <class X, size_t... I>
  auto slices(const X& grad, std::index_sequence<I...>) const {
    return std::make_tuple(grad.narrow(axis, starts[I], lengths[I])...);
  }
};

namespace detail {
template <class T, class D, size_t... I>
Tensor<T, D> concat_exactly(const std::vector<Tensor<T, D>>& parts, int axis,
                            std::index_sequence<I...>) {
  return apply(Concat<sizeof...(I)>{axis}, parts[I]...);
}

// One Concat<n> per count n in [1, kConcatMaxInputs], chosen by parts.size().
template <class T, class D, size_t... N>
Tensor<T, D> concat_counted(const std::vector<Tensor<T, D>>& parts, int axis,
                            std::index_sequence<N...>) {
  Tensor<T, D> out;
  ((parts.size() == N + 1
        ? void(out = concat_exactly(parts, axis, std::make_index_sequence<N + 1>{}))
        : void()),
   ...);
  return out;
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
  return detail::concat_counted(parts, axis, std::make_index_sequence<detail::kConcatMaxInputs>{});
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

// Rows of x along `dim` at a 1-D index tensor, x seen as [outer, dim_size, inner]; the backward
// adds each gradient row back at its index.
struct IndexSelect {
  static constexpr OpSaves saves = OpSaves::Inputs;
  static constexpr std::array<bool, 2> saved_inputs{false, true};  // the indices
  static constexpr bool zero_grads = true;                         // index_add accumulates
  template <class T>
  static constexpr bool cuda_type = detail::indexing_cuda_type<T>;
  int64_t dim;
  int axis = 0;
  int64_t outer = 0, dim_size = 0, count = 0, inner = 0;

  const char* name() const { return "index_select"; }
  template <class T, class D>
  Shape output_shape(const Tensor<T, D>& x, const Tensor<int64_t, D>& ids) {
    MENTOR_CHECK_SHAPE(x.dim() >= 1, "index_select: input must have at least one dimension");
    axis = wrap_dim(dim, x.dim(), "index_select");
    MENTOR_CHECK_SHAPE(ids.dim() <= 1, "index_select: indices must be 1-D, got ",
                       ids.shape().str());
    dim_size = x.size(axis);
    count = ids.numel();
    detail::checked_indices(ids, dim_size, "index_select", x.shape(), axis);
    outer = detail::span_numel(x.shape(), 0, axis);
    inner = detail::span_numel(x.shape(), axis + 1, x.dim());
    Shape shape = x.shape();
    shape[axis] = count;
    return shape;
  }
  template <class T>
  void forward_cpu(const Tensor<T, CPU>& x, const Tensor<int64_t, CPU>& ids,
                   Tensor<T, CPU>& out) const {
    cpu::index_select(x.data(), ids.data(), out.data(), outer, dim_size, count, inner);
  }
  template <class T>
  void forward_cuda(const Tensor<T, CUDA>& x, const Tensor<int64_t, CUDA>& ids,
                    Tensor<T, CUDA>& out) const {
    cuda::index_select<T>(x.data(), ids.data(), out.data(), outer, dim_size, count, inner);
  }
  template <class T>
  void backward_cpu(const Tensor<T, CPU>&, const Tensor<int64_t, CPU>& ids, const Tensor<T, CPU>&,
                    const Tensor<T, CPU>& grad_out, Tensor<T, CPU>& grad_x,
                    autograd::NoGrad) const {
    cpu::index_add(grad_out.data(), ids.data(), grad_x.data(), outer, dim_size, count, inner);
  }
  template <class T>
  void backward_cuda(const Tensor<T, CUDA>&, const Tensor<int64_t, CUDA>& ids,
                     const Tensor<T, CUDA>&, const Tensor<T, CUDA>& grad_out,
                     Tensor<T, CUDA>& grad_x, autograd::NoGrad) const {
    cuda::index_add<T>(grad_out.data(), ids.data(), grad_x.data(), outer, dim_size, count, inner);
  }
};

// Rows of x along `dim` picked by the 1-D index tensor ids: out.size(dim) == ids.numel().
template <Element T, class D>
Tensor<T, D> index_select(const Tensor<T, D>& x, int64_t dim, const Tensor<int64_t, D>& ids) {
  return apply(IndexSelect{dim}, x, ids);
}

// torch.gather along `dim`; the backward scatter-adds the gradient back at the indices.
struct Gather {
  static constexpr OpSaves saves = OpSaves::Inputs;
  static constexpr std::array<bool, 2> saved_inputs{false, true};  // the indices
  static constexpr bool zero_grads = true;                         // scatter_add accumulates
  template <class T>
  static constexpr bool cuda_type = detail::indexing_cuda_type<T>;
  int64_t dim;
  int axis = 0;
  Shape x_shape{};

  const char* name() const { return "gather"; }
  template <class T, class D>
  Shape output_shape(const Tensor<T, D>& x, const Tensor<int64_t, D>& ids) {
    MENTOR_CHECK_SHAPE(x.dim() >= 1, "gather: input must have at least one dimension");
    axis = wrap_dim(dim, x.dim(), "gather");
    bool fits = ids.dim() == x.dim();
    for (int d = 0; fits && d < x.dim(); ++d) fits = d == axis || ids.size(d) <= x.size(d);
    MENTOR_CHECK_SHAPE(fits, "gather: indices of shape ", ids.shape().str(),
                       " do not fit input of shape ", x.shape().str(), " along dimension ", axis);
    detail::checked_indices(ids, x.size(axis), "gather", x.shape(), axis);
    x_shape = x.shape();
    return ids.shape();
  }
  template <class T>
  void forward_cpu(const Tensor<T, CPU>& x, const Tensor<int64_t, CPU>& ids,
                   Tensor<T, CPU>& out) const {
    cpu::gather(x.data(), x_shape, ids.data(), ids.shape(), axis, out.data());
  }
  template <class T>
  void forward_cuda(const Tensor<T, CUDA>& x, const Tensor<int64_t, CUDA>& ids,
                    Tensor<T, CUDA>& out) const {
    cuda::gather<T>(x.data(), x_shape, ids.data(), ids.shape(), axis, out.data());
  }
  template <class T>
  void backward_cpu(const Tensor<T, CPU>&, const Tensor<int64_t, CPU>& ids, const Tensor<T, CPU>&,
                    const Tensor<T, CPU>& grad_out, Tensor<T, CPU>& grad_x,
                    autograd::NoGrad) const {
    cpu::scatter_add(grad_out.data(), ids.data(), ids.shape(), axis, grad_x.data(), x_shape);
  }
  template <class T>
  void backward_cuda(const Tensor<T, CUDA>&, const Tensor<int64_t, CUDA>& ids,
                     const Tensor<T, CUDA>&, const Tensor<T, CUDA>& grad_out,
                     Tensor<T, CUDA>& grad_x, autograd::NoGrad) const {
    cuda::scatter_add<T>(grad_out.data(), ids.data(), ids.shape(), axis, grad_x.data(), x_shape);
  }
};

// torch.gather: out has ids' shape, out[i][j][k] = x[i][ids[i][j][k]][k] for dim = 1.
template <Element T, class D>
Tensor<T, D> gather(const Tensor<T, D>& x, int64_t dim, const Tensor<int64_t, D>& ids) {
  return apply(Gather{dim}, x, ids);
}

// cond ? a : b with NumPy broadcasting of all three (inputs in the order a, b, cond: the branches
// give the element type). The backward routes the gradient to the chosen branch, zeros elsewhere,
// summed back to each branch's shape.
struct Where {
  static constexpr OpSaves saves = OpSaves::Inputs;
  static constexpr std::array<bool, 3> saved_inputs{false, false, true};  // the condition
  static constexpr bool composite_backward = true;
  static constexpr bool strided_inputs = true;  // read broadcast in place, never copied
  template <class T>
  static constexpr bool cuda_type = is_element_v<T>;  // src/cuda/shape_ops.cu: every element type
  Shape a_shape{}, b_shape{};

  const char* name() const { return "where"; }
  template <class T, class D>
  Shape output_shape(const Tensor<T, D>& a, const Tensor<T, D>& b, const Tensor<bool, D>& cond) {
    MENTOR_CHECK_SHAPE(cond.defined() && a.defined() && b.defined(),
                       "where: condition and both branches must be defined");
    a_shape = a.shape();
    b_shape = b.shape();
    return broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  }
  // Inputs of any strides, broadcast to out's shape.
  template <class T>
  void forward_cpu(const Tensor<T, CPU>& a, const Tensor<T, CPU>& b, const Tensor<bool, CPU>& cond,
                   Tensor<T, CPU>& out) const {
    const Shape& shape = out.shape();
    cpu::where(cond.data(), detail::broadcast_strides(cond, shape), a.data(),
               detail::broadcast_strides(a, shape), b.data(), detail::broadcast_strides(b, shape),
               out.data(), shape);
  }
  template <class T>
  void forward_cuda(const Tensor<T, CUDA>& a, const Tensor<T, CUDA>& b,
                    const Tensor<bool, CUDA>& cond, Tensor<T, CUDA>& out) const {
    const Shape& shape = out.shape();
    cuda::where<T>(cond.data(), detail::broadcast_strides(cond, shape), a.data(),
                   detail::broadcast_strides(a, shape), b.data(),
                   detail::broadcast_strides(b, shape), out.data(), shape);
  }
  template <class T, class D>
  auto backward(const Tensor<T, D>&, const Tensor<T, D>&, const Tensor<bool, D>& cond,
                const Tensor<T, D>&, const Tensor<T, D>& grad,
                const std::array<bool, 3>& needs) const {
    const Tensor<T, D> zero = Tensor<T, D>::zeros(Shape{});
    Tensor<T, D> ga, gb;
    if (needs[0]) ga = sum_to(select(cond, grad, zero, grad.shape()), a_shape);
    if (needs[1]) gb = sum_to(select(cond, zero, grad, grad.shape()), b_shape);
    return std::tuple{ga, gb, autograd::NoGrad{}};
  }
  // cond ? a : b broadcast to `shape`, recording nothing (the backward's and masked_fill's).
  template <class T, class D>
  static Tensor<T, D> select(const Tensor<bool, D>& cond, const Tensor<T, D>& a,
                             const Tensor<T, D>& b, const Shape& shape) {
    Tensor<T, D> out = Tensor<T, D>::empty(shape);
    launch(Where{}, a, b, cond, out);
    return out;
  }
};

// Elementwise cond ? a : b with NumPy broadcasting of all three.
template <Element T, class D>
Tensor<T, D> where(const Tensor<bool, D>& cond, const Tensor<T, D>& a, const Tensor<T, D>& b) {
  return apply(Where{}, a, b, cond);
}

// x with `value` wherever the mask (broadcast to x's shape) is true; the backward passes the
// gradient through where the mask is false.
struct MaskedFill {
  static constexpr OpSaves saves = OpSaves::Inputs;
  static constexpr std::array<bool, 2> saved_inputs{false, true};  // the mask
  static constexpr bool composite_backward = true;
  static constexpr bool strided_inputs = true;
  template <class T>
  static constexpr bool cuda_type = is_element_v<T>;  // the where kernel's types
  double value;

  const char* name() const { return "masked_fill"; }
  template <class T, class D>
  Shape output_shape(const Tensor<T, D>& x, const Tensor<bool, D>& mask) const {
    Shape shape = broadcast_shapes(x.shape(), mask.shape(), "masked_fill");
    MENTOR_CHECK_SHAPE(shape == x.shape(), "masked_fill: mask of shape ", mask.shape().str(),
                       " does not broadcast to the input's shape ", x.shape().str());
    return shape;
  }
  template <class T>
  void forward_cpu(const Tensor<T, CPU>& x, const Tensor<bool, CPU>& mask,
                   Tensor<T, CPU>& out) const {
    Where{}.forward_cpu(fill<T, CPU>(), x, mask, out);
  }
  template <class T>
  void forward_cuda(const Tensor<T, CUDA>& x, const Tensor<bool, CUDA>& mask,
                    Tensor<T, CUDA>& out) const {
    Where{}.forward_cuda(fill<T, CUDA>(), x, mask, out);
  }
  template <class T, class D>
  auto backward(const Tensor<T, D>&, const Tensor<bool, D>& mask, const Tensor<T, D>&,
                const Tensor<T, D>& grad, const std::array<bool, 2>&) const {
    const Tensor<T, D> zero = Tensor<T, D>::zeros(Shape{});
    return std::tuple{Where::select(mask, zero, grad, grad.shape()), autograd::NoGrad{}};
  }
  template <class T, class D>
  Tensor<T, D> fill() const {
    return Tensor<T, D>::full(Shape{}, convert_element<T>(value));
  }
};

// x with `value` wherever mask (broadcast to x's shape) is true.
template <Element T, class D>
Tensor<T, D> masked_fill(const Tensor<T, D>& x, const Tensor<bool, D>& mask, double value) {
  return apply(MaskedFill{value}, x, mask);
}

}  // namespace mentor
