// Launchers of ops/norm.hpp (RMSNorm, LayerNorm, GroupNorm; forward and backward). float and bf16,
// statistics in float (GroupNorm: double).
#include <cuda_runtime.h>

#include <algorithm>
#include <initializer_list>
#include <memory>

#include "mentor/backend/cuda/kernels/norm.cuh"
#include "mentor/backend/cuda/scratch.hpp"
#include "mentor/backend/launch/norm.hpp"
#include "mentor/core/cuda_api.hpp"

namespace mentor {

namespace cuda::kernels {
namespace {

constexpr int kMaxPacks = 8;

template <class T>
bool vector_rows(int64_t C, std::initializer_list<const void*> pointers) {
  constexpr int V = 16 / sizeof(T);
  if (C % V != 0 || C / V > 32 * kMaxPacks) return false;
  for (const void* p : pointers)
    if (p != nullptr && !is_aligned(p, 16)) return false;
  return true;
}

template <NormKind K, class T, int kPacks>
void launch_forward_vec(const NormForwardArgs<T>& a) {
  const int64_t blocks = std::min<int64_t>(ceil_div(a.rows, kNormWarpsPerBlock), 0x7fffffff);
  norm_forward_vec_kernel<K, T, kPacks>
      <<<static_cast<unsigned>(blocks), 32 * kNormWarpsPerBlock, 0, stream()>>>(a);
  MENTOR_CUDA_CHECK_LAUNCH("norm_forward_vec_kernel");
}
template <NormKind K, class T, int kPacks>
void launch_backward_vec(const NormBackwardArgs<T>& a) {
  const int64_t blocks = std::min<int64_t>(ceil_div(a.rows, kNormWarpsPerBlock), 0x7fffffff);
  norm_backward_vec_kernel<K, T, kPacks>
      <<<static_cast<unsigned>(blocks), 32 * kNormWarpsPerBlock, 0, stream()>>>(a);
  MENTOR_CUDA_CHECK_LAUNCH("norm_backward_vec_kernel");
}

// Calls fn.template operator()<kPacks>() with the packs per lane that rows of C elements need (1 to
// kMaxPacks: vector_rows accepted them).
template <class T, int kPacks = 1, class F>
void dispatch_packs(int64_t C, F&& fn) {
  constexpr int V = 16 / sizeof(T);
  if constexpr (kPacks < kMaxPacks) {
    if (ceil_div(C / V, 32) > kPacks) return dispatch_packs<T, kPacks + 1>(C, fn);
  }
  fn.template operator()<kPacks>();
}

template <NormKind K, class T>
void norm_forward(const NormForwardArgs<T>& a) {
  if (a.rows <= 0 || a.C <= 0) return;
  if (vector_rows<T>(a.C, {a.x, a.y, a.weight, a.bias})) {
    dispatch_packs<T>(a.C, [&]<int kPacks>() { launch_forward_vec<K, T, kPacks>(a); });
    return;
  }
  launch_rows(a.C, a.rows, [&]<int kGroup>(unsigned blocks) {
    norm_forward_generic_kernel<kGroup, K, T><<<blocks, kRowBlockThreads, 0, stream()>>>(a);
  });
  MENTOR_CUDA_CHECK_LAUNCH("norm_forward_generic_kernel");
}

// grad_h, plus grad_weight / grad_bias (either may be null) summed over rows.
template <NormKind K, class T>
void norm_backward(NormBackwardArgs<T> a, T* grad_weight, T* grad_bias) {
  if (a.rows <= 0 || a.C <= 0) {
    if (a.C > 0) {
      if (grad_weight != nullptr)
        MENTOR_CUDA_CHECK(cudaMemsetAsync(grad_weight, 0, sizeof(T) * a.C, stream()));
      if (grad_bias != nullptr)
        MENTOR_CUDA_CHECK(cudaMemsetAsync(grad_bias, 0, sizeof(T) * a.C, stream()));
    }
    return;
  }
  const bool want_params = grad_weight != nullptr || grad_bias != nullptr;
  std::unique_ptr<Scratch> stats;
  if (want_params) {
    stats = std::make_unique<Scratch>(sizeof(float) * 2 * static_cast<size_t>(a.rows));
    a.rstd = stats->as<float>();
    a.mean = K == NormKind::Layer ? stats->as<float>() + a.rows : nullptr;
  }
  if (vector_rows<T>(a.C, {a.h, a.grad_y, a.grad_h})) {
    dispatch_packs<T>(a.C, [&]<int kPacks>() { launch_backward_vec<K, T, kPacks>(a); });
  } else {
    launch_rows(a.C, a.rows, [&]<int kGroup>(unsigned blocks) {
      norm_backward_generic_kernel<kGroup, K, T><<<blocks, kRowBlockThreads, 0, stream()>>>(a);
    });
    MENTOR_CUDA_CHECK_LAUNCH("norm_backward_generic_kernel");
  }
  if (!want_params) return;
  const int64_t col_blocks = ceil_div(a.C, 32);
  const int64_t target = 4LL * multiprocessor_count();
  int64_t splits = std::max<int64_t>(
      1, std::min<int64_t>({ceil_div(target, col_blocks), ceil_div(a.rows, 64), 65535}));
  const int64_t rows_per_split = ceil_div(a.rows, splits);
  splits = ceil_div(a.rows, rows_per_split);
  Scratch partial(sizeof(float) * 2 * static_cast<size_t>(splits * a.C));
  float* partial_w = grad_weight != nullptr ? partial.as<float>() : nullptr;
  float* partial_b = grad_bias != nullptr ? partial.as<float>() + splits * a.C : nullptr;
  norm_param_grad_kernel<K, T>
      <<<dim3(static_cast<unsigned>(col_blocks), static_cast<unsigned>(splits)), dim3(32, 8), 0,
         stream()>>>(a.h, a.grad_y, a.mean, a.rstd, a.rows, a.C, rows_per_split, partial_w,
                     partial_b);
  MENTOR_CUDA_CHECK_LAUNCH("norm_param_grad_kernel");
  const unsigned blocks = static_cast<unsigned>(ceil_div(a.C, 256));
  if (grad_weight != nullptr) {
    sum_splits_kernel<T><<<blocks, 256, 0, stream()>>>(partial_w, splits, a.C, grad_weight);
    MENTOR_CUDA_CHECK_LAUNCH("sum_splits_kernel");
  }
  if (grad_bias != nullptr) {
    sum_splits_kernel<T><<<blocks, 256, 0, stream()>>>(partial_b, splits, a.C, grad_bias);
    MENTOR_CUDA_CHECK_LAUNCH("sum_splits_kernel");
  }
}

int checked_channels(int64_t C, const char* op) {
  MENTOR_CHECK(C <= 0x7fffffff, op, ": ", C, " channels are too many");
  return static_cast<int>(C);
}

// ---- GroupNorm -------------------------------------------------------------------------------
// Partial Σx and Σx² (double) of split s of group ng (blockIdx.y).
template <class T>
__global__ void group_stats_kernel(const T* __restrict__ x, int64_t group_size, int64_t chunk,
                                   double* __restrict__ partial) {
  __shared__ double scratch[32];
  const int64_t ng = blockIdx.y, s = blockIdx.x;
  const T* xg = x + ng * group_size;
  const int64_t begin = s * chunk, end = min(group_size, begin + chunk);
  double sum = 0.0, sq = 0.0;
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    const double v = to_acc(xg[i]);
    sum += v;
    sq += v * v;
  }
  sum = block_sum(sum, scratch);
  sq = block_sum(sq, scratch);
  if (threadIdx.x == 0) {
    partial[(ng * gridDim.x + s) * 2] = sum;
    partial[(ng * gridDim.x + s) * 2 + 1] = sq;
  }
}

__global__ void group_stats_finish_kernel(const double* __restrict__ partial, int64_t groups_total,
                                          int64_t splits, int64_t group_size, float eps,
                                          float* __restrict__ mean, float* __restrict__ rstd) {
  for (int64_t ng = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; ng < groups_total;
       ng += int64_t(gridDim.x) * blockDim.x) {
    double sum = 0.0, sq = 0.0;
    for (int64_t s = 0; s < splits; ++s) {
      sum += partial[(ng * splits + s) * 2];
      sq += partial[(ng * splits + s) * 2 + 1];
    }
    const double m = sum / static_cast<double>(group_size);
    const double var = fmax(sq / static_cast<double>(group_size) - m * m, 0.0);
    mean[ng] = static_cast<float>(m);
    rstd[ng] = static_cast<float>(1.0 / sqrt(var + static_cast<double>(eps)));
  }
}

template <class T>
__global__ void group_norm_apply_kernel(const T* __restrict__ x, const T* __restrict__ weight,
                                        const T* __restrict__ bias, const float* __restrict__ mean,
                                        const float* __restrict__ rstd, int64_t total, int64_t C,
                                        int64_t spatial, int64_t group_size, T* __restrict__ y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ng = i / group_size, c = (i / spatial) % C;
    const float w = weight != nullptr ? to_acc(weight[c]) : 1.f;
    const float b = bias != nullptr ? to_acc(bias[c]) : 0.f;
    y[i] = from_acc<T>((to_acc(x[i]) - mean[ng]) * rstd[ng] * w + b);
  }
}

// Per (n, c) (blockIdx.x): Σ_s g and Σ_s g x̂.
template <class T>
__global__ void group_channel_sums_kernel(const T* __restrict__ x, const T* __restrict__ g,
                                          const float* __restrict__ mean,
                                          const float* __restrict__ rstd, int64_t C,
                                          int64_t spatial, int64_t channels_per_group,
                                          float* __restrict__ sum_g, float* __restrict__ sum_gx) {
  __shared__ float scratch[32];
  const int64_t nc = blockIdx.x;
  const int64_t n = nc / C, c = nc % C, ng = n * (C / channels_per_group) + c / channels_per_group;
  const float m = mean[ng], r = rstd[ng];
  float sg = 0.f, sgx = 0.f;
  for (int64_t s = threadIdx.x; s < spatial; s += blockDim.x) {
    const float gv = to_acc(g[nc * spatial + s]);
    sg += gv;
    sgx += gv * (to_acc(x[nc * spatial + s]) - m) * r;
  }
  sg = block_sum(sg, scratch);
  sgx = block_sum(sgx, scratch);
  if (threadIdx.x == 0) {
    sum_g[nc] = sg;
    sum_gx[nc] = sgx;
  }
}

// Per group: a = mean(dx̂), b = mean(dx̂ x̂) with dx̂ = g w.
template <class T>
__global__ void group_coeff_kernel(const float* __restrict__ sum_g,
                                   const float* __restrict__ sum_gx, const T* __restrict__ weight,
                                   int64_t groups_total, int64_t groups, int64_t channels_per_group,
                                   int64_t group_size, float* __restrict__ coeff_a,
                                   float* __restrict__ coeff_b) {
  for (int64_t ng = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; ng < groups_total;
       ng += int64_t(gridDim.x) * blockDim.x) {
    const int64_t n = ng / groups, c0 = (ng % groups) * channels_per_group;
    const int64_t C = groups * channels_per_group;
    float sa = 0.f, sb = 0.f;
    for (int64_t cc = 0; cc < channels_per_group; ++cc) {
      const float w = weight != nullptr ? to_acc(weight[c0 + cc]) : 1.f;
      sa += w * sum_g[n * C + c0 + cc];
      sb += w * sum_gx[n * C + c0 + cc];
    }
    coeff_a[ng] = sa / static_cast<float>(group_size);
    coeff_b[ng] = sb / static_cast<float>(group_size);
  }
}

template <class T>
__global__ void group_norm_dx_kernel(const T* __restrict__ x, const T* __restrict__ g,
                                     const T* __restrict__ weight, const float* __restrict__ mean,
                                     const float* __restrict__ rstd,
                                     const float* __restrict__ coeff_a,
                                     const float* __restrict__ coeff_b, int64_t total, int64_t C,
                                     int64_t spatial, int64_t group_size, T* __restrict__ dx) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ng = i / group_size, c = (i / spatial) % C;
    const float w = weight != nullptr ? to_acc(weight[c]) : 1.f;
    const float r = rstd[ng];
    const float xhat = (to_acc(x[i]) - mean[ng]) * r;
    dx[i] = from_acc<T>(r * (to_acc(g[i]) * w - coeff_a[ng] - xhat * coeff_b[ng]));
  }
}

template <class T>
__global__ void group_param_grad_kernel(const float* __restrict__ per_nc, int64_t N, int64_t C,
                                        T* __restrict__ out) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C;
       c += int64_t(gridDim.x) * blockDim.x) {
    float acc = 0.f;
    for (int64_t n = 0; n < N; ++n) acc += per_nc[n * C + c];
    out[c] = from_acc<T>(acc);
  }
}

// mean/rstd [N * groups] of every group.
template <class T>
void group_stats(const T* x, int64_t groups_total, int64_t group_size, float eps, float* mean,
                 float* rstd) {
  const int64_t target = 4LL * multiprocessor_count();
  int64_t splits = std::max<int64_t>(
      1, std::min<int64_t>({ceil_div(target, groups_total), ceil_div(group_size, 256 * 16), 1024}));
  const int64_t chunk = std::max<int64_t>(1, ceil_div(group_size, splits));
  splits = std::max<int64_t>(1, ceil_div(group_size, chunk));
  MENTOR_CHECK(groups_total <= 65535, "group_norm: ", groups_total,
               " (sample, group) pairs exceed the launch limit of 65535");
  Scratch partial(sizeof(double) * 2 * static_cast<size_t>(groups_total * splits));
  group_stats_kernel<T><<<dim3(static_cast<unsigned>(splits), static_cast<unsigned>(groups_total)),
                          256, 0, stream()>>>(x, group_size, chunk, partial.as<double>());
  MENTOR_CUDA_CHECK_LAUNCH("group_stats_kernel");
  group_stats_finish_kernel<<<grid_blocks(groups_total, 256), 256, 0, stream()>>>(
      partial.as<double>(), groups_total, splits, group_size, eps, mean, rstd);
  MENTOR_CUDA_CHECK_LAUNCH("group_stats_finish_kernel");
}

}  // namespace
}  // namespace cuda::kernels

// ---- ops/norm.hpp ------------------------------------------------------------------------------
template <class T>
void cuda::rms_norm_forward(const T* x, const T* weight, T* y, int64_t rows, int64_t C, float eps) {
  cuda::kernels::NormForwardArgs<cuda::device_t<T>> a{
      .x = cuda::device_ptr(x),
      .weight = cuda::device_ptr(weight),
      .y = cuda::device_ptr(y),
      .rows = rows,
      .C = cuda::kernels::checked_channels(C, "rms_norm"),
      .eps = eps};
  cuda::kernels::norm_forward<cuda::kernels::NormKind::Rms>(a);
}

template <class T>
void cuda::rms_norm_backward(const T* x, const T* weight, const T* grad_y, T* grad_x,
                             T* grad_weight, int64_t rows, int64_t C, float eps) {
  using DT = cuda::device_t<T>;
  cuda::kernels::NormBackwardArgs<DT> a{.h = cuda::device_ptr(x),
                                        .weight = cuda::device_ptr(weight),
                                        .grad_y = cuda::device_ptr(grad_y),
                                        .grad_h = cuda::device_ptr(grad_x),
                                        .rows = rows,
                                        .C = cuda::kernels::checked_channels(C, "rms_norm"),
                                        .eps = eps};
  cuda::kernels::norm_backward<cuda::kernels::NormKind::Rms>(
      a, weight != nullptr ? cuda::device_ptr(grad_weight) : nullptr, static_cast<DT*>(nullptr));
}

template <class T>
void cuda::layer_norm_forward(const T* x, const T* weight, const T* bias, T* y, int64_t rows,
                              int64_t C, float eps) {
  cuda::kernels::NormForwardArgs<cuda::device_t<T>> a{
      .x = cuda::device_ptr(x),
      .weight = cuda::device_ptr(weight),
      .bias = cuda::device_ptr(bias),
      .y = cuda::device_ptr(y),
      .rows = rows,
      .C = cuda::kernels::checked_channels(C, "layer_norm"),
      .eps = eps};
  cuda::kernels::norm_forward<cuda::kernels::NormKind::Layer>(a);
}

template <class T>
void cuda::layer_norm_backward(const T* x, const T* weight, const T* grad_y, T* grad_x,
                               T* grad_weight, T* grad_bias, int64_t rows, int64_t C, float eps) {
  cuda::kernels::NormBackwardArgs<cuda::device_t<T>> a{
      .h = cuda::device_ptr(x),
      .weight = cuda::device_ptr(weight),
      .grad_y = cuda::device_ptr(grad_y),
      .grad_h = cuda::device_ptr(grad_x),
      .rows = rows,
      .C = cuda::kernels::checked_channels(C, "layer_norm"),
      .eps = eps};
  cuda::kernels::norm_backward<cuda::kernels::NormKind::Layer>(a, cuda::device_ptr(grad_weight),
                                                               cuda::device_ptr(grad_bias));
}

template <class T>
void cuda::group_norm_forward(const T* x_in, const T* weight, const T* bias, T* y, int64_t N,
                              int64_t C, int64_t spatial, int64_t groups, float eps) {
  using DT = cuda::device_t<T>;
  const DT* x = cuda::device_ptr(x_in);
  const int64_t groups_total = N * groups, group_size = (C / groups) * spatial;
  const int64_t total = N * C * spatial;
  if (total <= 0) return;
  cuda::Scratch stats(sizeof(float) * 2 * static_cast<size_t>(groups_total));
  float* mean = stats.as<float>();
  float* rstd = mean + groups_total;
  cuda::kernels::group_stats(x, groups_total, group_size, eps, mean, rstd);
  cuda::kernels::group_norm_apply_kernel<DT>
      <<<cuda::grid_blocks(total, 256), 256, 0, cuda::stream()>>>(
          x, cuda::device_ptr(weight), cuda::device_ptr(bias), mean, rstd, total, C, spatial,
          group_size, cuda::device_ptr(y));
  MENTOR_CUDA_CHECK_LAUNCH("group_norm_apply_kernel");
}

template <class T>
void cuda::group_norm_backward(const T* x_in, const T* weight_in, const T* grad_y, T* grad_x,
                               T* grad_weight, T* grad_bias, int64_t N, int64_t C, int64_t spatial,
                               int64_t groups, float eps) {
  using DT = cuda::device_t<T>;
  const DT* x = cuda::device_ptr(x_in);
  const DT* weight = cuda::device_ptr(weight_in);
  const DT* g = cuda::device_ptr(grad_y);
  const int64_t cpg = C / groups, groups_total = N * groups, group_size = cpg * spatial;
  const int64_t total = N * C * spatial;
  if (C <= 0) return;
  if (total <= 0) {
    if (grad_weight != nullptr)
      MENTOR_CUDA_CHECK(cudaMemsetAsync(grad_weight, 0, sizeof(T) * C, cuda::stream()));
    if (grad_bias != nullptr)
      MENTOR_CUDA_CHECK(cudaMemsetAsync(grad_bias, 0, sizeof(T) * C, cuda::stream()));
    return;
  }
  MENTOR_CHECK(N * C <= 0x7fffffff, "group_norm: too many (sample, channel) pairs");
  cuda::Scratch buffers(sizeof(float) * static_cast<size_t>(4 * groups_total + 2 * N * C));
  float* mean = buffers.as<float>();
  float* rstd = mean + groups_total;
  float* coeff_a = rstd + groups_total;
  float* coeff_b = coeff_a + groups_total;
  float* sum_g = coeff_b + groups_total;
  float* sum_gx = sum_g + N * C;
  cuda::kernels::group_stats(x, groups_total, group_size, eps, mean, rstd);
  cuda::kernels::group_channel_sums_kernel<DT>
      <<<static_cast<unsigned>(N * C), 256, 0, cuda::stream()>>>(x, g, mean, rstd, C, spatial, cpg,
                                                                 sum_g, sum_gx);
  MENTOR_CUDA_CHECK_LAUNCH("group_channel_sums_kernel");
  cuda::kernels::group_coeff_kernel<DT>
      <<<cuda::grid_blocks(groups_total, 256), 256, 0, cuda::stream()>>>(
          sum_g, sum_gx, weight, groups_total, groups, cpg, group_size, coeff_a, coeff_b);
  MENTOR_CUDA_CHECK_LAUNCH("group_coeff_kernel");
  cuda::kernels::group_norm_dx_kernel<DT>
      <<<cuda::grid_blocks(total, 256), 256, 0, cuda::stream()>>>(
          x, g, weight, mean, rstd, coeff_a, coeff_b, total, C, spatial, group_size,
          cuda::device_ptr(grad_x));
  MENTOR_CUDA_CHECK_LAUNCH("group_norm_dx_kernel");
  const unsigned blocks = cuda::grid_blocks(C, 256);
  if (grad_weight != nullptr) {
    cuda::kernels::group_param_grad_kernel<DT>
        <<<blocks, 256, 0, cuda::stream()>>>(sum_gx, N, C, cuda::device_ptr(grad_weight));
    MENTOR_CUDA_CHECK_LAUNCH("group_param_grad_kernel");
  }
  if (grad_bias != nullptr) {
    cuda::kernels::group_param_grad_kernel<DT>
        <<<blocks, 256, 0, cuda::stream()>>>(sum_g, N, C, cuda::device_ptr(grad_bias));
    MENTOR_CUDA_CHECK_LAUNCH("group_param_grad_kernel");
  }
}

#define MENTOR_INSTANTIATE_NORM(T)                                                                 \
  template void cuda::rms_norm_forward<T>(const T*, const T*, T*, int64_t, int64_t, float);        \
  template void cuda::rms_norm_backward<T>(const T*, const T*, const T*, T*, T*, int64_t, int64_t, \
                                           float);                                                 \
  template void cuda::layer_norm_forward<T>(const T*, const T*, const T*, T*, int64_t, int64_t,    \
                                            float);                                                \
  template void cuda::layer_norm_backward<T>(const T*, const T*, const T*, T*, T*, T*, int64_t,    \
                                             int64_t, float);                                      \
  template void cuda::group_norm_forward<T>(const T*, const T*, const T*, T*, int64_t, int64_t,    \
                                            int64_t, int64_t, float);                              \
  template void cuda::group_norm_backward<T>(const T*, const T*, const T*, T*, T*, T*, int64_t,    \
                                             int64_t, int64_t, int64_t, float);
MENTOR_INSTANTIATE_NORM(float)
MENTOR_INSTANTIATE_NORM(bf16)

}  // namespace mentor
