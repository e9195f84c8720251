#pragma once
// softmax and log_softmax over one dimension, numerically stable (shifted by the row maximum).
//
// The op works on contiguous rows (the dimension moved last); the row statistics (maximum, Σ exp,
// log-sum-exp, dot, sum) are backend/cpu/rows.hpp's.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "mentor/backend/cpu/math.hpp"
#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/backend/cpu/rows.hpp"
#include "mentor/backend/launch/softmax.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/ops/apply.hpp"
#include "mentor/ops/reduce.hpp"

namespace mentor {

namespace cpu {

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
                     const A sum_g = static_cast<A>(row_sum_double(gr, n));
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

// softmax or log_softmax of each row of x [..., n]; the backward reads the output alone.
struct SoftmaxRows {
  static constexpr OpSaves saves = OpSaves::Output;
  bool log;
  // Geometry, from output_shape().
  int64_t rows = 0, n = 0;

  const char* name() const { return log ? "log_softmax" : "softmax"; }
  template <class T, class D>
  Shape output_shape(const Tensor<T, D>& x) {
    n = x.size(-1);
    rows = n == 0 ? 0 : x.numel() / n;
    return x.shape();
  }
  template <class T>
  void forward_cpu(const Tensor<T, CPU>& x, Tensor<T, CPU>& out) const {
    if (rows > 0) cpu::softmax_rows_kernel(x.data(), out.data(), rows, n, log);
  }
  template <class T>
  void forward_cuda(const Tensor<T, CUDA>& x, Tensor<T, CUDA>& out) const {
    if (rows > 0) cuda::softmax_rows(x.data(), out.data(), rows, n, log);
  }
  template <class T>
  void backward_cpu(const Tensor<T, CPU>&, const Tensor<T, CPU>& out,
                    const Tensor<T, CPU>& grad_out, Tensor<T, CPU>& grad_x) const {
    if (rows > 0)
      cpu::softmax_backward_rows_kernel(out.data(), grad_out.data(), grad_x.data(), rows, n, log);
  }
  template <class T>
  void backward_cuda(const Tensor<T, CUDA>&, const Tensor<T, CUDA>& out,
                     const Tensor<T, CUDA>& grad_out, Tensor<T, CUDA>& grad_x) const {
    if (rows > 0)
      cuda::softmax_backward_rows(out.data(), grad_out.data(), grad_x.data(), rows, n, log);
  }
};

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
  return axis_restored(apply(SoftmaxRows{log}, axis_last_view(x, axis)), axis);
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
