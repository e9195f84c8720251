#pragma once
// l2_normalize: x / max(‖x‖₂, eps) along one dimension (torch.nn.functional.normalize with p = 2).
//
// Below eps the denominator is the constant eps, so the gradient there is grad / eps (as torch's
// clamp_min passes no gradient to the norm); otherwise grad_x = (g − y·Σ g·y) / ‖x‖.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/backend/launch/normalize.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/ops/dispatch.hpp"
#include "mentor/ops/reduce.hpp"
#include "mentor/ops/softmax.hpp"

namespace mentor {

namespace cpu {

// Per row of x [rows, n]: norms[r] = ‖row‖₂ (acc precision), out = row / max(norms[r], eps).
template <class T>
void l2_normalize_rows_kernel(const T* x, T* out, acc_t<T>* norms, int64_t rows, int64_t n,
                              double eps) {
  using A = acc_t<T>;
  parallel_for(rows, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(n, 1)),
               [&](int64_t begin, int64_t end) {
                 for (int64_t r = begin; r < end; ++r) {
                   const T* xr = x + r * n;
                   const A norm = std::sqrt(row_dot(xr, xr, n));
                   norms[r] = norm;
                   const A inv = A(1) / std::max(norm, static_cast<A>(eps));
                   for (int64_t i = 0; i < n; ++i)
                     out[r * n + i] = static_cast<T>(static_cast<A>(xr[i]) * inv);
                 }
               });
}

template <class T>
void l2_normalize_backward_rows_kernel(const T* x, const acc_t<T>* norms, const T* g, T* gx,
                                       int64_t rows, int64_t n, double eps) {
  using A = acc_t<T>;
  parallel_for(rows, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(n, 1)),
               [&](int64_t begin, int64_t end) {
                 for (int64_t r = begin; r < end; ++r) {
                   const T* xr = x + r * n;
                   const T* gr = g + r * n;
                   T* out = gx + r * n;
                   const A norm = norms[r];
                   const A inv = A(1) / std::max(norm, static_cast<A>(eps));
                   if (norm >= static_cast<A>(eps)) {
                     // Σ g·y with y = x / norm
                     const A dot = row_dot(gr, xr, n) * inv;
                     for (int64_t i = 0; i < n; ++i)
                       out[i] = static_cast<T>(
                           (static_cast<A>(gr[i]) - static_cast<A>(xr[i]) * inv * dot) * inv);
                   } else {
                     for (int64_t i = 0; i < n; ++i)
                       out[i] = static_cast<T>(static_cast<A>(gr[i]) * inv);
                   }
                 }
               });
}

}  // namespace cpu

namespace detail {
template <class T, class D>
Tensor<T, D> l2_normalize_nd(const Tensor<T, D>& x, int64_t dim, double eps);
}

// x / max(‖x‖₂ over `dim`, eps).
template <FloatingElement T, class D>
Tensor<T, D> l2_normalize(const Tensor<T, D>& x, int64_t dim = -1, double eps = 1e-12) {
  if (x.dim() == 0) return detail::l2_normalize_nd(x.reshape(Shape{1}), 0, eps).reshape(Shape{});
  return detail::l2_normalize_nd(x, dim, eps);
}

template <class T, class D>
Tensor<T, D> detail::l2_normalize_nd(const Tensor<T, D>& x, int64_t dim, double eps) {
  using A = acc_t<T>;
  const int axis = wrap_dim(dim, x.dim(), "l2_normalize");
  const int64_t n = x.size(axis);
  const int64_t rows = n == 0 ? 0 : x.numel() / n;
  Tensor<T, D> rows_x = detail::move_axis_last(x, axis);
  Tensor<T, D> rows_y = Tensor<T, D>::empty(rows_x.shape());
  Tensor<A, D> norms = Tensor<A, D>::empty(Shape{rows});
  if (rows > 0) {
    if constexpr (std::is_same_v<D, CPU>) {
      cpu::l2_normalize_rows_kernel(rows_x.data(), rows_y.data(), norms.data(), rows, n, eps);
    } else {
      MENTOR_CUDA_CALL(cuda::l2_normalize_rows(rows_x.data(), rows_y.data(), norms.data(), rows, n,
                                               static_cast<float>(eps)));
    }
  }
  Tensor<T, D> out = detail::restore_axis(rows_y, axis);
  autograd::record(
      "l2_normalize", out,
      [rows_x = rows_x.detach(), norms, axis, rows, n, eps](const Tensor<T, D>& g) {
        Tensor<T, D> rows_g = detail::move_axis_last(g, axis);
        Tensor<T, D> rows_gx = Tensor<T, D>::empty(rows_x.shape());
        if (rows > 0) {
          if constexpr (std::is_same_v<D, CPU>) {
            cpu::l2_normalize_backward_rows_kernel(rows_x.data(), norms.data(), rows_g.data(),
                                                   rows_gx.data(), rows, n, eps);
          } else {
            MENTOR_CUDA_CALL(cuda::l2_normalize_backward_rows(rows_x.data(), norms.data(),
                                                              rows_g.data(), rows_gx.data(), rows,
                                                              n, static_cast<float>(eps)));
          }
        }
        return std::tuple{detail::restore_axis(rows_gx, axis)};
      },
      x);
  return out;
}

}  // namespace mentor
