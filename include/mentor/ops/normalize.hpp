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
#include "mentor/backend/cpu/rows.hpp"
#include "mentor/backend/launch/normalize.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/ops/apply.hpp"
#include "mentor/ops/reduce.hpp"

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

// Rows of x [rows, n]: out = row / max(‖row‖₂, eps); the norms (acc precision) are kept for the
// backward as the op's second output.
struct L2NormalizeRows {
  static constexpr OpSaves saves = OpSaves::Inputs;
  template <class T>
  using aux_t = acc_t<T>;
  double eps;
  int64_t rows = 0, n = 0;

  const char* name() const { return "l2_normalize"; }
  template <class T, class D>
  Shape output_shape(const Tensor<T, D>& x) {
    n = x.size(-1);
    rows = n == 0 ? 0 : x.numel() / n;
    return x.shape();
  }
  Shape aux_shape() const { return Shape{rows}; }
  template <class T>
  void forward_cpu(const Tensor<T, CPU>& x, Tensor<T, CPU>& out,
                   Tensor<acc_t<T>, CPU>& norms) const {
    if (rows > 0) cpu::l2_normalize_rows_kernel(x.data(), out.data(), norms.data(), rows, n, eps);
  }
  template <class T>
  void forward_cuda(const Tensor<T, CUDA>& x, Tensor<T, CUDA>& out,
                    Tensor<acc_t<T>, CUDA>& norms) const {
    if (rows > 0)
      cuda::l2_normalize_rows(x.data(), out.data(), norms.data(), rows, n, static_cast<float>(eps));
  }
  template <class T>
  void backward_cpu(const Tensor<T, CPU>& x, const Tensor<T, CPU>&,
                    const Tensor<acc_t<T>, CPU>& norms, const Tensor<T, CPU>& g,
                    Tensor<T, CPU>& gx) const {
    if (rows > 0)
      cpu::l2_normalize_backward_rows_kernel(x.data(), norms.data(), g.data(), gx.data(), rows, n,
                                             eps);
  }
  template <class T>
  void backward_cuda(const Tensor<T, CUDA>& x, const Tensor<T, CUDA>&,
                     const Tensor<acc_t<T>, CUDA>& norms, const Tensor<T, CUDA>& g,
                     Tensor<T, CUDA>& gx) const {
    if (rows > 0)
      cuda::l2_normalize_backward_rows(x.data(), norms.data(), g.data(), gx.data(), rows, n,
                                       static_cast<float>(eps));
  }
};

namespace detail {
// The rows op on x with `axis` moved last (views, differentiable).
template <class T, class D>
Tensor<T, D> l2_normalize_along(const Tensor<T, D>& x, int axis, double eps) {
  return axis_restored(apply(L2NormalizeRows{eps}, axis_last_view(x, axis)).first, axis);
}
}  // namespace detail

// x / max(‖x‖₂ over `dim`, eps).
template <FloatingElement T, class D>
Tensor<T, D> l2_normalize(const Tensor<T, D>& x, int64_t dim = -1, double eps = 1e-12) {
  if (x.dim() == 0) return detail::l2_normalize_along(x.reshape(Shape{1}), 0, eps).reshape(Shape{});
  return detail::l2_normalize_along(x, wrap_dim(dim, x.dim(), "l2_normalize"), eps);
}

}  // namespace mentor
