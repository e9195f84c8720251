#pragma once
// Reductions: sum and mean (over everything or one dimension), max with its indices, argmax,
// argmin, and topk.
//
// sum/mean view the input as [outer, n, inner] (n = the reduced dimension) and accumulate in double
// whatever T is: float rows of 16384 values and whole-tensor sums stay accurate, and the summation
// order is fixed (independent of the thread count). max/argmax/argmin/topk move the reduced
// dimension last (a differentiable view, copied by apply() only when it is not last already) and
// are ops on contiguous rows.
#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <tuple>
#include <vector>

#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/backend/cpu/rows.hpp"
#include "mentor/backend/launch/reduce.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/ops/apply.hpp"
#include "mentor/ops/elementwise.hpp"

namespace mentor {

template <class T, class D>
struct MaxResult {
  Tensor<T, D> values;
  Tensor<int64_t, D> indices;
};

template <class T, class D>
struct TopKResult {
  Tensor<T, D> values;  // sorted: best first
  Tensor<int64_t, D> indices;
};

namespace detail {

// A shape seen as [outer, n, inner] around one axis.
struct ReduceAxis {
  int64_t outer = 1, n = 1, inner = 1;
};
inline ReduceAxis reduce_axis(const Shape& shape, int axis) {
  ReduceAxis r;
  for (int i = 0; i < axis; ++i) r.outer *= shape[i];
  r.n = shape[axis];
  for (int i = axis + 1; i < shape.rank(); ++i) r.inner *= shape[i];
  return r;
}
// `shape` with `axis` removed, or set to 1 when keepdim.
inline Shape reduced_shape(const Shape& shape, int axis, bool keepdim) {
  Shape out;
  for (int i = 0; i < shape.rank(); ++i) {
    if (i != axis)
      out.push_back(shape[i]);
    else if (keepdim)
      out.push_back(1);
  }
  return out;
}
// Permutation orders that move `axis` to the end (other dimensions keep their order) and back.
inline std::vector<int64_t> axis_last_order(int rank, int axis) {
  std::vector<int64_t> order;
  for (int i = 0; i < rank; ++i)
    if (i != axis) order.push_back(i);
  order.push_back(axis);
  return order;
}
inline std::vector<int64_t> axis_restore_order(int rank, int axis) {
  std::vector<int64_t> order;
  for (int i = 0; i < rank; ++i) order.push_back(i < axis ? i : (i == axis ? rank - 1 : i - 1));
  return order;
}
// x with `axis` moved last, as a differentiable view (x itself when it is last already): the rows
// that the row ops read (apply() makes them contiguous).
template <class T, class D>
Tensor<T, D> axis_last_view(const Tensor<T, D>& x, int axis) {
  return axis == x.dim() - 1 ? x : x.permute(axis_last_order(x.dim(), axis));
}
// Inverse of axis_last_view, differentiable: y's last dimension back at `axis`, contiguous.
template <class T, class D>
Tensor<T, D> axis_restored(const Tensor<T, D>& y, int axis) {
  return axis == y.dim() - 1 ? y : y.permute(axis_restore_order(y.dim(), axis)).contiguous();
}

// The number of rows of x [..., n]: the product of every dimension but the last.
template <class T, class D>
int64_t leading_rows(const Tensor<T, D>& x) {
  int64_t rows = 1;
  for (int i = 0; i + 1 < x.dim(); ++i) rows *= x.size(i);
  return rows;
}

}  // namespace detail

namespace cpu {

// out[o, j] = scale · Σ_k x[o, k, j] for x contiguous [outer, n, inner].
template <class T>
void sum_axis_kernel(const T* x, T* out, int64_t outer, int64_t n, int64_t inner, double scale) {
  if (inner == 1 && outer == 1) {
    // One long row: fixed blocks summed in parallel, then the block sums in order.
    constexpr int64_t kBlock = 1 << 16;
    int64_t blocks = (n + kBlock - 1) / kBlock;
    std::vector<double> partial(static_cast<size_t>(std::max<int64_t>(blocks, 1)), 0.0);
    parallel_for(blocks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b)
        partial[static_cast<size_t>(b)] =
            row_sum_double(x + b * kBlock, std::min(kBlock, n - b * kBlock));
    });
    double s = 0;
    for (double p : partial) s += p;
    out[0] = static_cast<T>(s * scale);
    return;
  }
  if (inner == 1) {
    parallel_for(outer, std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(n, 1)),
                 [&](int64_t begin, int64_t end) {
                   for (int64_t o = begin; o < end; ++o)
                     out[o] = static_cast<T>(row_sum_double(x + o * n, n) * scale);
                 });
    return;
  }
  // Columns: work items are (o, block of kCols columns); each sums its rows top to bottom.
  constexpr int64_t kCols = 64;
  const int64_t col_blocks = (inner + kCols - 1) / kCols;
  const int64_t items = outer * col_blocks;
  parallel_for(items, std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(n * kCols, 1)),
               [&](int64_t begin, int64_t end) {
                 double acc[kCols];
                 for (int64_t item = begin; item < end; ++item) {
                   const int64_t o = item / col_blocks, j0 = (item % col_blocks) * kCols;
                   const int64_t width = std::min(kCols, inner - j0);
                   for (int64_t j = 0; j < width; ++j) acc[j] = 0;
                   for (int64_t k = 0; k < n; ++k) {
                     const T* row = x + (o * n + k) * inner + j0;
                     for (int64_t j = 0; j < width; ++j)
                       acc[j] += static_cast<double>(static_cast<acc_t<T>>(row[j]));
                   }
                   for (int64_t j = 0; j < width; ++j)
                     out[o * inner + j0 + j] = static_cast<T>(acc[j] * scale);
                 }
               });
}

// "a is better than b" for max (largest) or min; NaN counts as better than any number (torch's
// max/min propagate NaN).
template <class A>
inline bool better_value(A a, A b, bool largest) {
  if (a != a) return b == b;
  return largest ? a > b : a < b;
}

// Per row r of x [rows, n]: the first best element's index (and value, if values != nullptr).
template <class T>
void arg_best_rows_kernel(const T* x, int64_t rows, int64_t n, bool largest, T* values,
                          int64_t* indices) {
  using A = acc_t<T>;
  parallel_for(rows, std::max<int64_t>(1, (1 << 15) / n), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T* row = x + r * n;
      A best = static_cast<A>(row[0]);
      int64_t best_index = 0;
      for (int64_t k = 1; k < n; ++k) {
        A v = static_cast<A>(row[k]);
        if (better_value(v, best, largest)) best = v, best_index = k;
      }
      indices[r] = best_index;
      if (values) values[r] = row[best_index];
    }
  });
}

// Per row of x [rows, n]: the k best elements, best first (ties: lower index first; NaN largest).
template <class T>
void topk_rows_kernel(const T* x, int64_t rows, int64_t n, int64_t k, bool largest, T* values,
                      int64_t* indices) {
  using A = acc_t<T>;
  struct Item {
    A value;
    int64_t index;
  };
  auto before = [largest](const Item& a, const Item& b) {
    bool a_nan = a.value != a.value, b_nan = b.value != b.value;
    if (a_nan != b_nan) return largest ? a_nan : b_nan;
    if (!a_nan && a.value != b.value) return largest ? a.value > b.value : a.value < b.value;
    return a.index < b.index;
  };
  parallel_for(rows, std::max<int64_t>(1, (1 << 14) / n), [&](int64_t begin, int64_t end) {
    std::vector<Item> items(static_cast<size_t>(n));
    for (int64_t r = begin; r < end; ++r) {
      const T* row = x + r * n;
      for (int64_t i = 0; i < n; ++i) items[static_cast<size_t>(i)] = {static_cast<A>(row[i]), i};
      if (k < n) std::nth_element(items.begin(), items.begin() + k, items.end(), before);
      std::sort(items.begin(), items.begin() + k, before);
      for (int64_t i = 0; i < k; ++i) {
        values[r * k + i] = row[items[static_cast<size_t>(i)].index];
        indices[r * k + i] = items[static_cast<size_t>(i)].index;
      }
    }
  });
}

// grad_x[r, idx[r, i]] += g[r, i] for grad_x [rows, n] (zeroed by the caller), g/idx [rows, k].
template <class T>
void scatter_rows_add_kernel(const T* g, const int64_t* idx, int64_t rows, int64_t k, int64_t n,
                             T* grad_x) {
  using A = acc_t<T>;
  parallel_for(rows, std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(k, 1)),
               [&](int64_t begin, int64_t end) {
                 for (int64_t r = begin; r < end; ++r)
                   for (int64_t i = 0; i < k; ++i) {
                     T& dst = grad_x[r * n + idx[r * k + i]];
                     dst = static_cast<T>(static_cast<A>(dst) + static_cast<A>(g[r * k + i]));
                   }
               });
}

}  // namespace cpu

// sum (scale 1) or mean (scale 1/n) over `axis`, or over everything when axis < 0. Backward: the
// scaled gradient broadcast back over the reduced dimension.
struct SumOrMean {
  static constexpr OpSaves saves = OpSaves::None;
  static constexpr bool composite_backward = true;
  int axis;  // wrapped, or -1 for everything
  bool keepdim;
  bool mean;
  // Geometry, from output_shape().
  detail::ReduceAxis r{};
  Shape in_shape{};    // the input's
  Shape keep_shape{};  // the output's with the reduced dimension kept as 1
  double scale = 1.0;

  const char* name() const { return mean ? "mean" : "sum"; }
  template <class T, class D>
  Shape output_shape(const Tensor<T, D>& x) {
    in_shape = x.shape();
    Shape out_shape;
    if (axis < 0) {
      r.n = x.numel();
      for (int i = 0; i < x.dim(); ++i) keep_shape.push_back(1);
    } else {
      r = detail::reduce_axis(in_shape, axis);
      out_shape = detail::reduced_shape(in_shape, axis, keepdim);
      keep_shape = detail::reduced_shape(in_shape, axis, true);
    }
    // mean of nothing is NaN (as torch), sum of nothing 0.
    scale =
        mean ? (r.n > 0 ? 1.0 / static_cast<double>(r.n) : std::numeric_limits<double>::quiet_NaN())
             : 1.0;
    return out_shape;
  }
  template <class T>
  void forward_cpu(const Tensor<T, CPU>& x, Tensor<T, CPU>& out) const {
    cpu::sum_axis_kernel(x.data(), out.data(), r.outer, r.n, r.inner, scale);
  }
  template <class T>
  void forward_cuda(const Tensor<T, CUDA>& x, Tensor<T, CUDA>& out) const {
    cuda::sum_axis(x.data(), out.data(), r.outer, r.n, r.inner, static_cast<float>(scale));
  }
  template <class T, class D>
  std::tuple<Tensor<T, D>> backward(const Tensor<T, D>&, const Tensor<T, D>&, const Tensor<T, D>& g,
                                    const std::array<bool, 1>&) const {
    Tensor<T, D> scaled = scale == 1.0 ? g : mul_scalar(g, scale);
    return {scaled.reshape(keep_shape).expand(in_shape).contiguous_nograd()};
  }
};

// Rows of x [..., n] (the reduced dimension moved last, n >= 1): each row's first maximum and its
// index (the aux output); the gradient goes to that index.
struct MaxRows {
  static constexpr OpSaves saves = OpSaves::None;
  static constexpr bool zero_grads = true;
  template <class T>
  using aux_t = int64_t;
  Shape out_shape;  // the rows' shape without n (with a 1 where keepdim keeps the dimension)
  int64_t rows = 0, n = 0;

  const char* name() const { return "max"; }
  template <class T, class D>
  Shape output_shape(const Tensor<T, D>& x) {
    rows = detail::leading_rows(x);
    n = x.size(-1);
    return out_shape;
  }
  Shape aux_shape() const { return out_shape; }
  template <class T>
  void forward_cpu(const Tensor<T, CPU>& x, Tensor<T, CPU>& values,
                   Tensor<int64_t, CPU>& indices) const {
    cpu::arg_best_rows_kernel(x.data(), rows, n, true, values.data(), indices.data());
  }
  template <class T>
  void forward_cuda(const Tensor<T, CUDA>& x, Tensor<T, CUDA>& values,
                    Tensor<int64_t, CUDA>& indices) const {
    cuda::arg_best_rows(x.data(), rows, n, true, values.data(), indices.data());
  }
  template <class T>
  void backward_cpu(const Tensor<T, CPU>&, const Tensor<T, CPU>&,
                    const Tensor<int64_t, CPU>& indices, const Tensor<T, CPU>& grad_out,
                    Tensor<T, CPU>& grad_x) const {
    cpu::scatter_rows_add_kernel(grad_out.data(), indices.data(), rows, 1, n, grad_x.data());
  }
  template <class T>
  void backward_cuda(const Tensor<T, CUDA>&, const Tensor<T, CUDA>&,
                     const Tensor<int64_t, CUDA>& indices, const Tensor<T, CUDA>& grad_out,
                     Tensor<T, CUDA>& grad_x) const {
    cuda::scatter_rows_add(grad_out.data(), indices.data(), rows, 1, n, grad_x.data());
  }
};

// Rows of x [..., n] (n >= 1): the index of each row's first maximum (largest) or minimum.
struct ArgBestRows {
  static constexpr bool differentiable = false;
  template <class T>
  using out_t = int64_t;
  bool largest;
  Shape out_shape;  // as MaxRows'
  int64_t rows = 0, n = 0;

  const char* name() const { return largest ? "argmax" : "argmin"; }
  template <class T, class D>
  Shape output_shape(const Tensor<T, D>& x) {
    rows = detail::leading_rows(x);
    n = x.size(-1);
    return out_shape;
  }
  template <class T>
  void forward_cpu(const Tensor<T, CPU>& x, Tensor<int64_t, CPU>& indices) const {
    cpu::arg_best_rows_kernel(x.data(), rows, n, largest, static_cast<T*>(nullptr), indices.data());
  }
  template <class T>
  void forward_cuda(const Tensor<T, CUDA>& x, Tensor<int64_t, CUDA>& indices) const {
    cuda::arg_best_rows(x.data(), rows, n, largest, static_cast<T*>(nullptr), indices.data());
  }
};

// Rows of x [..., n]: the k best entries of each row, best first, and their indices (the aux
// output); the gradient goes to the picked positions.
struct TopKRows {
  static constexpr OpSaves saves = OpSaves::None;
  static constexpr bool zero_grads = true;
  template <class T>
  using aux_t = int64_t;
  int64_t k;
  bool largest;
  // Geometry, from output_shape().
  Shape out_shape{};  // the rows' shape with k for n
  int64_t rows = 0, n = 0;

  const char* name() const { return "topk"; }
  template <class T, class D>
  Shape output_shape(const Tensor<T, D>& x) {
    rows = detail::leading_rows(x);
    n = x.size(-1);
    out_shape = x.shape();
    out_shape[out_shape.rank() - 1] = k;
    return out_shape;
  }
  Shape aux_shape() const { return out_shape; }
  template <class T>
  void forward_cpu(const Tensor<T, CPU>& x, Tensor<T, CPU>& values,
                   Tensor<int64_t, CPU>& indices) const {
    if (k > 0) cpu::topk_rows_kernel(x.data(), rows, n, k, largest, values.data(), indices.data());
  }
  template <class T>
  void forward_cuda(const Tensor<T, CUDA>& x, Tensor<T, CUDA>& values,
                    Tensor<int64_t, CUDA>& indices) const {
    if (k > 0) cuda::topk_rows(x.data(), rows, n, k, largest, values.data(), indices.data());
  }
  template <class T>
  void backward_cpu(const Tensor<T, CPU>&, const Tensor<T, CPU>&,
                    const Tensor<int64_t, CPU>& indices, const Tensor<T, CPU>& grad_out,
                    Tensor<T, CPU>& grad_x) const {
    cpu::scatter_rows_add_kernel(grad_out.data(), indices.data(), rows, k, n, grad_x.data());
  }
  template <class T>
  void backward_cuda(const Tensor<T, CUDA>&, const Tensor<T, CUDA>&,
                     const Tensor<int64_t, CUDA>& indices, const Tensor<T, CUDA>& grad_out,
                     Tensor<T, CUDA>& grad_x) const {
    cuda::scatter_rows_add(grad_out.data(), indices.data(), rows, k, n, grad_x.data());
  }
};

namespace detail {

template <class T, class D>
Tensor<int64_t, D> arg_reduce(const Tensor<T, D>& x, int64_t dim, bool keepdim, bool largest,
                              const char* name) {
  if (x.dim() == 0) return arg_reduce(x.reshape(Shape{1}), 0, false, largest, name);
  int axis = wrap_dim(dim, x.dim(), name);
  MENTOR_CHECK_SHAPE(x.size(axis) > 0, name, ": cannot reduce the empty dimension ", axis,
                     " of shape ", x.shape().str());
  return apply(ArgBestRows{largest, reduced_shape(x.shape(), axis, keepdim)},
               axis_last_view(x.detach(), axis));
}

}  // namespace detail

// Σ of all elements -> shape [].
template <FloatingElement T, class D>
Tensor<T, D> sum(const Tensor<T, D>& x) {
  return apply(SumOrMean{-1, false, false}, x);
}

// Σ over `dim` (the dimension is dropped unless keepdim).
template <FloatingElement T, class D>
Tensor<T, D> sum(const Tensor<T, D>& x, int64_t dim, bool keepdim = false) {
  if (x.dim() == 0) return apply(SumOrMean{0, false, false}, x.reshape(Shape{1}));
  return apply(SumOrMean{wrap_dim(dim, x.dim(), "sum"), keepdim, false}, x);
}

// Mean of all elements -> shape [].
template <FloatingElement T, class D>
Tensor<T, D> mean(const Tensor<T, D>& x) {
  return apply(SumOrMean{-1, false, true}, x);
}

template <FloatingElement T, class D>
Tensor<T, D> mean(const Tensor<T, D>& x, int64_t dim, bool keepdim = false) {
  if (x.dim() == 0) return apply(SumOrMean{0, false, true}, x.reshape(Shape{1}));
  return apply(SumOrMean{wrap_dim(dim, x.dim(), "mean"), keepdim, true}, x);
}

// Maximum over `dim` and the index of its first occurrence; the gradient goes to that index.
template <FloatingElement T, class D>
MaxResult<T, D> max(const Tensor<T, D>& x, int64_t dim, bool keepdim = false) {
  if (x.dim() == 0) return max(x.reshape(Shape{1}), 0, false);
  int axis = wrap_dim(dim, x.dim(), "max");
  MENTOR_CHECK_SHAPE(x.size(axis) > 0, "max: cannot reduce the empty dimension ", axis,
                     " of shape ", x.shape().str());
  auto [values, indices] = apply(MaxRows{detail::reduced_shape(x.shape(), axis, keepdim)},
                                 detail::axis_last_view(x, axis));
  return {values, indices};
}

// Index of the first maximum / minimum over `dim` (no gradient).
template <FloatingElement T, class D>
Tensor<int64_t, D> argmax(const Tensor<T, D>& x, int64_t dim, bool keepdim = false) {
  return detail::arg_reduce(x, dim, keepdim, true, "argmax");
}
template <FloatingElement T, class D>
Tensor<int64_t, D> argmin(const Tensor<T, D>& x, int64_t dim, bool keepdim = false) {
  return detail::arg_reduce(x, dim, keepdim, false, "argmin");
}

// The k largest (or smallest) entries along `dim`, sorted best first, with their indices; `dim`
// keeps its place with size k. The gradient goes to the picked positions.
template <FloatingElement T, class D>
TopKResult<T, D> topk(const Tensor<T, D>& x, int64_t k, int64_t dim = -1, bool largest = true) {
  if (x.dim() == 0) return topk(x.reshape(Shape{1}), k, 0, largest);
  int axis = wrap_dim(dim, x.dim(), "topk");
  MENTOR_CHECK_SHAPE(k >= 0 && k <= x.size(axis), "topk: k = ", k, " out of range for dimension ",
                     axis, " of shape ", x.shape().str());
  auto [values, indices] = apply(TopKRows{k, largest}, detail::axis_last_view(x, axis));
  return {detail::axis_restored(values, axis), detail::axis_restored(indices, axis)};
}

}  // namespace mentor
