// Launchers of ops/softmax.hpp and ops/normalize.hpp: row-wise softmax / log_softmax and L2
// normalisation, forward and backward (float and bf16, statistics in float).
#include <cuda_runtime.h>

#include "mentor/backend/cuda/kernels/common.cuh"
#include "mentor/backend/cuda/kernels/rows.cuh"
#include "mentor/backend/launch/normalize.hpp"
#include "mentor/backend/launch/softmax.hpp"

namespace mentor {

namespace cuda::kernels {
namespace {

template <int kGroup, class T>
__global__ void softmax_rows_kernel(const T* __restrict__ x, T* __restrict__ out, int64_t rows,
                                    int64_t n, bool log) {
  using G = RowGroup<kGroup>;
  __shared__ MaxSum scratch[32];
  for (int64_t r = G::first_row(); r < rows; r += G::row_step()) {
    const T* xr = x + r * n;
    T* yr = out + r * n;
    const MaxSum st = G::row_max_sum(n, scratch, [&](int64_t i) { return to_acc(xr[i]); });
    if (log) {
      const float log_s = logf(st.s);
      for (int64_t i = G::lane(); i < n; i += kGroup)
        yr[i] = from_acc<T>((to_acc(xr[i]) - st.m) - log_s);
    } else {
      const float inv_s = 1.0f / st.s;
      for (int64_t i = G::lane(); i < n; i += kGroup)
        yr[i] = from_acc<T>(expf(to_acc(xr[i]) - st.m) * inv_s);
    }
  }
}

// softmax: gx = y (g − Σ g y); log_softmax: gx = g − exp(y) Σ g.
template <int kGroup, class T>
__global__ void softmax_backward_rows_kernel(const T* __restrict__ y, const T* __restrict__ g,
                                             T* __restrict__ gx, int64_t rows, int64_t n,
                                             bool log) {
  using G = RowGroup<kGroup>;
  __shared__ float scratch[32];
  for (int64_t r = G::first_row(); r < rows; r += G::row_step()) {
    const T* yr = y + r * n;
    const T* gr = g + r * n;
    T* out = gx + r * n;
    const float total = G::row_sum(
        n, scratch, [&](int64_t i) { return log ? to_acc(gr[i]) : to_acc(gr[i]) * to_acc(yr[i]); });
    for (int64_t i = G::lane(); i < n; i += kGroup) {
      const float yi = to_acc(yr[i]), gi = to_acc(gr[i]);
      out[i] = from_acc<T>(log ? gi - expf(yi) * total : yi * (gi - total));
    }
  }
}

template <int kGroup, class T>
__global__ void l2_normalize_rows_kernel(const T* __restrict__ x, T* __restrict__ out,
                                         float* __restrict__ norms, int64_t rows, int64_t n,
                                         float eps) {
  using G = RowGroup<kGroup>;
  __shared__ float scratch[32];
  for (int64_t r = G::first_row(); r < rows; r += G::row_step()) {
    const T* xr = x + r * n;
    const float norm = sqrtf(G::row_sum(n, scratch, [&](int64_t i) {
      const float v = to_acc(xr[i]);
      return v * v;
    }));
    if (G::lane() == 0) norms[r] = norm;
    const float inv = 1.0f / fmaxf(norm, eps);
    for (int64_t i = G::lane(); i < n; i += kGroup)
      out[r * n + i] = from_acc<T>(to_acc(xr[i]) * inv);
  }
}

template <int kGroup, class T>
__global__ void l2_normalize_backward_rows_kernel(const T* __restrict__ x,
                                                  const float* __restrict__ norms,
                                                  const T* __restrict__ g, T* __restrict__ gx,
                                                  int64_t rows, int64_t n, float eps) {
  using G = RowGroup<kGroup>;
  __shared__ float scratch[32];
  for (int64_t r = G::first_row(); r < rows; r += G::row_step()) {
    const T* xr = x + r * n;
    const T* gr = g + r * n;
    T* out = gx + r * n;
    const float norm = norms[r];
    const float inv = 1.0f / fmaxf(norm, eps);
    // Σ g·y with y = x / norm
    const float dot =
        G::row_sum(n, scratch, [&](int64_t i) { return to_acc(gr[i]) * to_acc(xr[i]); }) * inv;
    const bool regular = norm >= eps;
    for (int64_t i = G::lane(); i < n; i += kGroup) {
      const float gi = to_acc(gr[i]);
      out[i] = from_acc<T>(regular ? (gi - to_acc(xr[i]) * inv * dot) * inv : gi * inv);
    }
  }
}

}  // namespace
}  // namespace cuda::kernels

template <class T>
void cuda::softmax_rows(const T* x, T* out, int64_t rows, int64_t n, bool log) {
  if (rows <= 0 || n <= 0) return;
  MENTOR_LAUNCH_ROWS(cuda::kernels::softmax_rows_kernel, n, rows, cuda::device_ptr(x),
                     cuda::device_ptr(out), rows, n, log);
}

template <class T>
void cuda::softmax_backward_rows(const T* y, const T* grad_out, T* grad_x, int64_t rows, int64_t n,
                                 bool log) {
  if (rows <= 0 || n <= 0) return;
  MENTOR_LAUNCH_ROWS(cuda::kernels::softmax_backward_rows_kernel, n, rows, cuda::device_ptr(y),
                     cuda::device_ptr(grad_out), cuda::device_ptr(grad_x), rows, n, log);
}

template <class T>
void cuda::l2_normalize_rows(const T* x, T* out, acc_t<T>* norms, int64_t rows, int64_t n,
                             float eps) {
  if (rows <= 0) return;
  MENTOR_LAUNCH_ROWS(cuda::kernels::l2_normalize_rows_kernel, n, rows, cuda::device_ptr(x),
                     cuda::device_ptr(out), norms, rows, n, eps);
}

template <class T>
void cuda::l2_normalize_backward_rows(const T* x, const acc_t<T>* norms, const T* grad_out,
                                      T* grad_x, int64_t rows, int64_t n, float eps) {
  if (rows <= 0) return;
  MENTOR_LAUNCH_ROWS(cuda::kernels::l2_normalize_backward_rows_kernel, n, rows, cuda::device_ptr(x),
                     norms, cuda::device_ptr(grad_out), cuda::device_ptr(grad_x), rows, n, eps);
}

#define MENTOR_INSTANTIATE_SOFTMAX(T)                                                           \
  template void cuda::softmax_rows<T>(const T*, T*, int64_t, int64_t, bool);                    \
  template void cuda::softmax_backward_rows<T>(const T*, const T*, T*, int64_t, int64_t, bool); \
  template void cuda::l2_normalize_rows<T>(const T*, T*, acc_t<T>*, int64_t, int64_t, float);   \
  template void cuda::l2_normalize_backward_rows<T>(const T*, const acc_t<T>*, const T*, T*,    \
                                                    int64_t, int64_t, float);
MENTOR_INSTANTIATE_SOFTMAX(float)
MENTOR_INSTANTIATE_SOFTMAX(bf16)

}  // namespace mentor
