#pragma once
// Reductions: sum and mean (over everything or one dimension), max with its indices, argmax,
// argmin, and topk.
//
// sum/mean view the input as [outer, n, inner] (n = the reduced dimension) and accumulate in double
// whatever T is: float rows of 16384 values and whole-tensor sums stay accurate, and the summation
// order is fixed (independent of the thread count). max/argmax/argmin/topk move the reduced
// dimension last (a copy only when it is not last already) and work on contiguous rows.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/backend/launch/reduce.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/ops/dispatch.hpp"
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
// A contiguous copy (no history) of x with `axis` moved last: rows of x along `axis`.
template <class T, class D>
Tensor<T, D> move_axis_last(const Tensor<T, D>& x, int axis) {
  if (axis == x.dim() - 1) return x.contiguous_nograd();
  return x.detach().permute(axis_last_order(x.dim(), axis)).contiguous_nograd();
}
// Inverse of move_axis_last: y's last dimension goes back to position `axis` (contiguous copy).
template <class T, class D>
Tensor<T, D> restore_axis(const Tensor<T, D>& y, int axis) {
  if (axis == y.dim() - 1) return y;
  return y.detach().permute(axis_restore_order(y.dim(), axis)).contiguous_nograd();
}

}  // namespace detail

namespace cpu {

// Σ x[0..n), accumulated in double over 8 independent lanes (vectorises; fixed order).
template <class T>
double sum_row_double(const T* x, int64_t n) {
  double lanes[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) lanes[l] += static_cast<double>(static_cast<acc_t<T>>(x[i + l]));
  double s = 0;
  for (int l = 0; l < 8; ++l) s += lanes[l];
  for (; i < n; ++i) s += static_cast<double>(static_cast<acc_t<T>>(x[i]));
  return s;
}

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
            sum_row_double(x + b * kBlock, std::min(kBlock, n - b * kBlock));
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
                     out[o] = static_cast<T>(sum_row_double(x + o * n, n) * scale);
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

namespace detail {

template <class T, class D>
Tensor<T, D> sum_axis_forward(const Tensor<T, D>& src, const ReduceAxis& r, const Shape& out_shape,
                              double scale) {
  Tensor<T, D> out = Tensor<T, D>::empty(out_shape);
  if constexpr (std::is_same_v<D, CPU>) {
    cpu::sum_axis_kernel(src.data(), out.data(), r.outer, r.n, r.inner, scale);
  } else {
    MENTOR_CUDA_CALL(
        cuda::sum_axis(src.data(), out.data(), r.outer, r.n, r.inner, static_cast<float>(scale)));
  }
  return out;
}

// sum (scale 1) or mean (scale 1/n) over `axis`, or over everything when axis < 0.
template <class T, class D>
Tensor<T, D> sum_or_mean(const Tensor<T, D>& x, int axis, bool keepdim, bool mean,
                         const char* name) {
  ReduceAxis r;
  Shape out_shape, keep_shape;
  if (axis < 0) {
    r.n = x.numel();
    for (int i = 0; i < x.dim(); ++i) keep_shape.push_back(1);
  } else {
    r = reduce_axis(x.shape(), axis);
    out_shape = reduced_shape(x.shape(), axis, keepdim);
    keep_shape = reduced_shape(x.shape(), axis, true);
  }
  // mean of nothing is NaN (as torch), sum of nothing 0.
  double scale =
      mean ? (r.n > 0 ? 1.0 / static_cast<double>(r.n) : std::numeric_limits<double>::quiet_NaN())
           : 1.0;
  Tensor<T, D> out = sum_axis_forward(x.contiguous_nograd(), r, out_shape, scale);
  autograd::record(
      name, out,
      [in_shape = x.shape(), keep_shape, scale](const Tensor<T, D>& g) {
        Tensor<T, D> scaled = scale == 1.0 ? g : mul_scalar(g, scale);
        return std::tuple{scaled.reshape(keep_shape).expand(in_shape).contiguous_nograd()};
      },
      x);
  return out;
}

// Gradient of a row selection: rows of g/idx [rows, k] scattered into zeros [rows, n].
template <class T, class D>
Tensor<T, D> scatter_rows_add(const Tensor<T, D>& g, const Tensor<int64_t, D>& idx, int64_t rows,
                              int64_t k, int64_t n, const Shape& rows_shape) {
  Tensor<T, D> gc = g.contiguous_nograd();
  Tensor<T, D> gx = Tensor<T, D>::zeros(rows_shape);
  if constexpr (std::is_same_v<D, CPU>) {
    cpu::scatter_rows_add_kernel(gc.data(), idx.data(), rows, k, n, gx.data());
  } else {
    MENTOR_CUDA_CALL(cuda::scatter_rows_add(gc.data(), idx.data(), rows, k, n, gx.data()));
  }
  return gx;
}

template <class T, class D>
void arg_best(const Tensor<T, D>& rows_x, int64_t rows, int64_t n, bool largest, T* values,
              int64_t* indices) {
  if constexpr (std::is_same_v<D, CPU>) {
    cpu::arg_best_rows_kernel(rows_x.data(), rows, n, largest, values, indices);
  } else {
    MENTOR_CUDA_CALL(cuda::arg_best_rows(rows_x.data(), rows, n, largest, values, indices));
  }
}

template <class T, class D>
Tensor<int64_t, D> arg_reduce(const Tensor<T, D>& x, int64_t dim, bool keepdim, bool largest,
                              const char* name) {
  if (x.dim() == 0) return arg_reduce(x.reshape(Shape{1}), 0, false, largest, name);
  int axis = wrap_dim(dim, x.dim(), name);
  MENTOR_CHECK_SHAPE(x.size(axis) > 0, name, ": cannot reduce the empty dimension ", axis,
                     " of shape ", x.shape().str());
  ReduceAxis r = reduce_axis(x.shape(), axis);
  Tensor<T, D> rows_x = move_axis_last(x, axis);
  Tensor<int64_t, D> indices = Tensor<int64_t, D>::empty(reduced_shape(x.shape(), axis, keepdim));
  arg_best(rows_x, r.outer * r.inner, r.n, largest, static_cast<T*>(nullptr), indices.data());
  return indices;
}

}  // namespace detail

// Σ of all elements -> shape [].
template <FloatingElement T, class D>
Tensor<T, D> sum(const Tensor<T, D>& x) {
  return detail::sum_or_mean(x, -1, false, false, "sum");
}

// Σ over `dim` (the dimension is dropped unless keepdim).
template <FloatingElement T, class D>
Tensor<T, D> sum(const Tensor<T, D>& x, int64_t dim, bool keepdim = false) {
  if (x.dim() == 0) return detail::sum_or_mean(x.reshape(Shape{1}), 0, false, false, "sum");
  return detail::sum_or_mean(x, wrap_dim(dim, x.dim(), "sum"), keepdim, false, "sum");
}

// Mean of all elements -> shape [].
template <FloatingElement T, class D>
Tensor<T, D> mean(const Tensor<T, D>& x) {
  return detail::sum_or_mean(x, -1, false, true, "mean");
}

template <FloatingElement T, class D>
Tensor<T, D> mean(const Tensor<T, D>& x, int64_t dim, bool keepdim = false) {
  if (x.dim() == 0) return detail::sum_or_mean(x.reshape(Shape{1}), 0, false, true, "mean");
  return detail::sum_or_mean(x, wrap_dim(dim, x.dim(), "mean"), keepdim, true, "mean");
}

// Maximum over `dim` and the index of its first occurrence; the gradient goes to that index.
template <FloatingElement T, class D>
MaxResult<T, D> max(const Tensor<T, D>& x, int64_t dim, bool keepdim = false) {
  if (x.dim() == 0) return max(x.reshape(Shape{1}), 0, false);
  int axis = wrap_dim(dim, x.dim(), "max");
  MENTOR_CHECK_SHAPE(x.size(axis) > 0, "max: cannot reduce the empty dimension ", axis,
                     " of shape ", x.shape().str());
  detail::ReduceAxis r = detail::reduce_axis(x.shape(), axis);
  const int64_t rows = r.outer * r.inner;
  Tensor<T, D> rows_x = detail::move_axis_last(x, axis);
  Shape out_shape = detail::reduced_shape(x.shape(), axis, keepdim);
  MaxResult<T, D> result{Tensor<T, D>::empty(out_shape), Tensor<int64_t, D>::empty(out_shape)};
  detail::arg_best(rows_x, rows, r.n, true, result.values.data(), result.indices.data());
  Shape rows_shape = rows_x.shape();
  autograd::record(
      "max", result.values,
      [indices = result.indices, rows, n = r.n, rows_shape, axis](const Tensor<T, D>& g) {
        Tensor<T, D> gx = detail::scatter_rows_add(g, indices, rows, 1, n, rows_shape);
        return std::tuple{detail::restore_axis(gx, axis)};
      },
      x);
  return result;
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
  detail::ReduceAxis r = detail::reduce_axis(x.shape(), axis);
  const int64_t rows = r.outer * r.inner;
  Tensor<T, D> rows_x = detail::move_axis_last(x, axis);
  Shape rows_k_shape = rows_x.shape();
  rows_k_shape[rows_k_shape.rank() - 1] = k;
  Tensor<T, D> values = Tensor<T, D>::empty(rows_k_shape);
  Tensor<int64_t, D> indices = Tensor<int64_t, D>::empty(rows_k_shape);
  if (k > 0) {
    if constexpr (std::is_same_v<D, CPU>) {
      cpu::topk_rows_kernel(rows_x.data(), rows, r.n, k, largest, values.data(), indices.data());
    } else {
      MENTOR_CUDA_CALL(
          cuda::topk_rows(rows_x.data(), rows, r.n, k, largest, values.data(), indices.data()));
    }
  }
  TopKResult<T, D> result{detail::restore_axis(values, axis), detail::restore_axis(indices, axis)};
  autograd::record(
      "topk", result.values,
      [rows_indices = indices, rows, k, n = r.n, rows_shape = rows_x.shape(),
       axis](const Tensor<T, D>& g) {
        Tensor<T, D> g_rows = detail::move_axis_last(g, axis);
        Tensor<T, D> gx = detail::scatter_rows_add(g_rows, rows_indices, rows, k, n, rows_shape);
        return std::tuple{detail::restore_axis(gx, axis)};
      },
      x);
  return result;
}

}  // namespace mentor
