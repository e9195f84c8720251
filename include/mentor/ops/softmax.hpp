#pragma once
// softmax and log_softmax over one dimension, numerically stable (shifted by the row maximum).
//
// The CPU row kernels also serve the losses: row_max_sum_exp() reads a row once, block by block
// (each block stays in L1): the block's maximum, then the block's Σ exp(x − m) with the running sum
// rescaled whenever the maximum grows. Float rows use the vectorisable exp of unary.hpp.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/backend/launch/softmax.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/ops/dispatch.hpp"
#include "mentor/ops/reduce.hpp"
#include "mentor/ops/unary.hpp"

namespace mentor {

namespace cpu {

// max of x[0..n) in acc_t<T> over 16 independent lanes (vectorises); NaNs are skipped here (they
// reach the result through the exp sum instead); -inf for n == 0.
template <class T>
acc_t<T> row_max(const T* x, int64_t n) {
  using A = acc_t<T>;
  constexpr int kLanes = 16;
  A lanes[kLanes];
  for (int l = 0; l < kLanes; ++l) lanes[l] = -std::numeric_limits<A>::infinity();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      A v = static_cast<A>(x[i + l]);
      lanes[l] = v > lanes[l] ? v : lanes[l];
    }
  A m = -std::numeric_limits<A>::infinity();
  for (; i < n; ++i) {
    A v = static_cast<A>(x[i]);
    m = v > m ? v : m;
  }
  for (int l = 0; l < kLanes; ++l) m = lanes[l] > m ? lanes[l] : m;
  return m;
}

// Σ exp(x[i] − shift) over 16 lanes.
template <class T>
acc_t<T> row_sum_exp(const T* x, int64_t n, acc_t<T> shift) {
  using A = acc_t<T>;
  constexpr int kLanes = 16;
  A lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) lanes[l] += exp_vectorizable(static_cast<A>(x[i + l]) - shift);
  A s = 0;
  for (int l = 0; l < kLanes; ++l) s += lanes[l];
  for (; i < n; ++i) s += exp_vectorizable(static_cast<A>(x[i]) - shift);
  return s;
}

// Σ x[i] · y[i] over 16 lanes.
template <class T>
acc_t<T> row_dot(const T* x, const T* y, int64_t n) {
  using A = acc_t<T>;
  constexpr int kLanes = 16;
  A lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l)
      lanes[l] += static_cast<A>(x[i + l]) * static_cast<A>(y[i + l]);
  A s = 0;
  for (int l = 0; l < kLanes; ++l) s += lanes[l];
  for (; i < n; ++i) s += static_cast<A>(x[i]) * static_cast<A>(y[i]);
  return s;
}

template <class A>
struct RowMaxSumExp {
  A max;  // m = max of the row (-inf if every entry is -inf)
  A sum;  // Σ exp(x − m); log-sum-exp = m + log(sum)
};

// One pass over the row (see the file comment). A row of -inf gives {-inf, NaN} as torch would.
template <class T>
RowMaxSumExp<acc_t<T>> row_max_sum_exp(const T* x, int64_t n) {
  using A = acc_t<T>;
  constexpr int64_t kBlock = 2048;
  A m = -std::numeric_limits<A>::infinity(), s = 0;
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t len = std::min(kBlock, n - b);
    A block_max = row_max(x + b, len);
    if (block_max > m) {
      s = (s == A(0)) ? A(0) : s * exp_vectorizable(m - block_max);
      m = block_max;
    }
    if (m == -std::numeric_limits<A>::infinity()) continue;  // masked so far: nothing to add
    s += row_sum_exp(x + b, len, m);
  }
  return {m, s};
}

// Rows of x [rows, n]: out = softmax (or log_softmax) of each row.
template <class T>
void softmax_rows_kernel(const T* x, T* out, int64_t rows, int64_t n, bool log) {
  using A = acc_t<T>;
  parallel_for(rows, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(n, 1)),
               [&](int64_t begin, int64_t end) {
                 for (int64_t r = begin; r < end; ++r) {
                   const T* xr = x + r * n;
                   T* yr = out + r * n;
                   auto [m, s] = row_max_sum_exp(xr, n);
                   if (log) {
                     const A log_s = std::log(s);
                     for (int64_t i = 0; i < n; ++i)
                       yr[i] = static_cast<T>((static_cast<A>(xr[i]) - m) - log_s);
                   } else {
                     const A inv_s = A(1) / s;
                     for (int64_t i = 0; i < n; ++i)
                       yr[i] = static_cast<T>(exp_vectorizable(static_cast<A>(xr[i]) - m) * inv_s);
                   }
                 }
               });
}

// softmax:     gx = y · (g − Σ g·y)
// log_softmax: gx = g − exp(y) · Σ g
template <class T>
void softmax_backward_rows_kernel(const T* y, const T* g, T* gx, int64_t rows, int64_t n,
                                  bool log) {
  using A = acc_t<T>;
  parallel_for(rows, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(n, 1)),
               [&](int64_t begin, int64_t end) {
                 for (int64_t r = begin; r < end; ++r) {
                   const T* yr = y + r * n;
                   const T* gr = g + r * n;
                   T* out = gx + r * n;
                   if (log) {
                     const A sum_g = static_cast<A>(sum_row_double(gr, n));
                     for (int64_t i = 0; i < n; ++i)
                       out[i] = static_cast<T>(static_cast<A>(gr[i]) -
                                               exp_vectorizable(static_cast<A>(yr[i])) * sum_g);
                   } else {
                     const A dot = row_dot(gr, yr, n);
                     for (int64_t i = 0; i < n; ++i)
                       out[i] =
                           static_cast<T>(static_cast<A>(yr[i]) * (static_cast<A>(gr[i]) - dot));
                   }
                 }
               });
}

}  // namespace cpu

namespace detail {

template <class T, class D>
Tensor<T, D> softmax_nd(const Tensor<T, D>& x, int64_t dim, bool log, const char* name);

// A scalar is a one-element row (not recursion: GCC 12 flags that as infinite).
template <class T, class D>
Tensor<T, D> softmax_impl(const Tensor<T, D>& x, int64_t dim, bool log, const char* name) {
  if (x.dim() == 0) return softmax_nd(x.reshape(Shape{1}), 0, log, name).reshape(Shape{});
  return softmax_nd(x, dim, log, name);
}

template <class T, class D>
Tensor<T, D> softmax_nd(const Tensor<T, D>& x, int64_t dim, bool log, const char* name) {
  const int axis = wrap_dim(dim, x.dim(), name);
  const int64_t n = x.size(axis);
  const int64_t rows = n == 0 ? 0 : x.numel() / n;
  Tensor<T, D> rows_x = move_axis_last(x, axis);
  Tensor<T, D> rows_y = Tensor<T, D>::empty(rows_x.shape());
  if (rows > 0) {
    if constexpr (std::is_same_v<D, CPU>) {
      cpu::softmax_rows_kernel(rows_x.data(), rows_y.data(), rows, n, log);
    } else {
      MENTOR_CUDA_CALL(cuda::softmax_rows(rows_x.data(), rows_y.data(), rows, n, log));
    }
  }
  Tensor<T, D> out = restore_axis(rows_y, axis);
  autograd::record(
      name, out,
      [rows_y = rows_y.detach(), axis, rows, n, log](const Tensor<T, D>& g) {
        Tensor<T, D> rows_g = move_axis_last(g, axis);
        Tensor<T, D> rows_gx = Tensor<T, D>::empty(rows_y.shape());
        if (rows > 0) {
          if constexpr (std::is_same_v<D, CPU>) {
            cpu::softmax_backward_rows_kernel(rows_y.data(), rows_g.data(), rows_gx.data(), rows, n,
                                              log);
          } else {
            MENTOR_CUDA_CALL(cuda::softmax_backward_rows(rows_y.data(), rows_g.data(),
                                                         rows_gx.data(), rows, n, log));
          }
        }
        return std::tuple{restore_axis(rows_gx, axis)};
      },
      x);
  return out;
}

}  // namespace detail

// exp(x − max) / Σ exp(x − max) along `dim`.
template <FloatingElement T, class D>
Tensor<T, D> softmax(const Tensor<T, D>& x, int64_t dim = -1) {
  return detail::softmax_impl(x, dim, false, "softmax");
}

// x − max − log Σ exp(x − max) along `dim`.
template <FloatingElement T, class D>
Tensor<T, D> log_softmax(const Tensor<T, D>& x, int64_t dim = -1) {
  return detail::softmax_impl(x, dim, true, "log_softmax");
}

}  // namespace mentor
