#pragma once
// Row normalisation kernels (RMSNorm and LayerNorm over the last dimension), forward and backward,
// and the parameter-gradient column reductions.
//
// Two shapes of kernel:
//  - vectorised: a warp per row, the row kept in registers as kPacks 16-byte packs per lane (rows
//    of C % (16 / sizeof(T)) == 0 elements up to 256 packs, 16-byte aligned): x is read once and y
//    written once, which is what makes RMSNorm bandwidth-bound;
//  - generic: a warp or a block per row walking the row in memory (any C, any alignment).
// Statistics are in float. The backward recomputes each row's statistics from its input (cheaper
// than storing them) and writes them for the weight-gradient kernel.
#include <cuda_runtime.h>

#include "mentor/backend/cuda/kernels/common.cuh"
#include "mentor/backend/cuda/kernels/rows.cuh"

namespace mentor::cuda::kernels {

enum class NormKind { Rms, Layer };

template <class T>
struct NormForwardArgs {
  const T* x;
  const T* weight;  // null: 1
  const T* bias;    // null: 0 (LayerNorm only)
  T* y;
  int64_t rows;
  int C;
  float eps;
};

template <class T>
struct NormBackwardArgs {
  const T* h;       // the normalised input
  const T* weight;  // null: 1
  const T* grad_y;
  T* grad_h;
  float* mean;  // [rows] written (LayerNorm) for the parameter gradients; may be null
  float* rstd;  // [rows] written; may be null
  int64_t rows;
  int C;
  float eps;
};

constexpr int kNormWarpsPerBlock = 4;

// y from the normalised value v̂ (in float) at channel c.
template <NormKind K, class T>
__device__ __forceinline__ T norm_output(float xhat, const T* weight, const T* bias, int c) {
  if constexpr (K == NormKind::Rms) {
    // LlamaGen: the normalised value is cast to T before the weight multiplies it.
    const float normed = round_to<T>(xhat);
    return from_acc<T>(weight != nullptr ? normed * to_acc(weight[c]) : normed);
  } else {
    float v = xhat;
    if (weight != nullptr) v *= to_acc(weight[c]);
    if (bias != nullptr) v += to_acc(bias[c]);
    return from_acc<T>(v);
  }
}

// A row's statistics: mean (LayerNorm; 0 for RMSNorm) and rstd = 1 / sqrt(mean(x²) + eps)
// (RMSNorm) or 1 / sqrt(var(x) + eps) (LayerNorm).
struct NormStats {
  float mean;
  float rstd;
};

// Loads a row into registers, one warp per row, and returns its statistics: load(j, p) fills h[j]
// with the row's pack p = lane + 32 j, for each p < packs.
template <NormKind K, int kPacks, class T, class Load>
__device__ __forceinline__ NormStats load_row_stats(Pack16<T> (&h)[kPacks], int lane, int packs,
                                                    float inv_c, float eps, Load load) {
  constexpr int V = Pack16<T>::kSize;
  float sum = 0.f;
#pragma unroll
  for (int j = 0; j < kPacks; ++j) {
    const int p = lane + 32 * j;
    if (p < packs) {
      load(j, p);
#pragma unroll
      for (int e = 0; e < V; ++e) {
        const float v = to_acc(h[j].elem[e]);
        sum += K == NormKind::Rms ? v * v : v;
      }
    }
  }
  sum = warp_sum(sum);
  if constexpr (K == NormKind::Rms) {
    return {0.f, 1.0f / sqrtf(sum * inv_c + eps)};
  } else {
    const float mean = sum * inv_c;
    float sq = 0.f;
#pragma unroll
    for (int j = 0; j < kPacks; ++j) {
      if (lane + 32 * j < packs) {
#pragma unroll
        for (int e = 0; e < V; ++e) {
          const float d = to_acc(h[j].elem[e]) - mean;
          sq += d * d;
        }
      }
    }
    return {mean, 1.0f / sqrtf(warp_sum(sq) * inv_c + eps)};
  }
}

// The statistics of a row of C elements in memory, over a row group.
template <int kGroup, NormKind K, class T>
__device__ __forceinline__ NormStats row_stats(const T* h, int C, float inv_c, float eps,
                                               float* scratch) {
  using G = RowGroup<kGroup>;
  const float sum = G::row_sum(C, scratch, [&](int c) {
    const float v = to_acc(h[c]);
    return K == NormKind::Rms ? v * v : v;
  });
  if constexpr (K == NormKind::Rms) {
    return {0.f, 1.0f / sqrtf(sum * inv_c + eps)};
  } else {
    const float mean = sum * inv_c;
    const float sq = G::row_sum(C, scratch, [&](int c) {
      const float d = to_acc(h[c]) - mean;
      return d * d;
    });
    return {mean, 1.0f / sqrtf(sq * inv_c + eps)};
  }
}

template <NormKind K, class T, int kPacks>
__global__ void __launch_bounds__(32 * kNormWarpsPerBlock)
    norm_forward_vec_kernel(NormForwardArgs<T> a) {
  constexpr int V = Pack16<T>::kSize;
  const int lane = threadIdx.x & 31;
  const int packs = a.C / V;
  const float inv_c = 1.0f / static_cast<float>(a.C);
  for (int64_t row = int64_t(blockIdx.x) * kNormWarpsPerBlock + threadIdx.x / 32; row < a.rows;
       row += int64_t(gridDim.x) * kNormWarpsPerBlock) {
    const int64_t base = row * a.C;
    Pack16<T> h[kPacks];
    const T* x = a.x + base;
    const auto [mean, rstd] = load_row_stats<K>(h, lane, packs, inv_c, a.eps,
                                                [&](int j, int p) { h[j] = load16(x + p * V); });
#pragma unroll
    for (int j = 0; j < kPacks; ++j) {
      const int p = lane + 32 * j;
      if (p < packs) {
        // weight and bias are 16-byte aligned here (checked by the launcher): whole packs.
        Pack16<T> w, bias, out;
        if (a.weight != nullptr) w = load16(a.weight + p * V);
        if (a.bias != nullptr) bias = load16(a.bias + p * V);
#pragma unroll
        for (int e = 0; e < V; ++e) {
          const float xhat = (to_acc(h[j].elem[e]) - mean) * rstd;
          if constexpr (K == NormKind::Rms) {
            const float normed = round_to<T>(xhat);
            out.elem[e] = from_acc<T>(a.weight != nullptr ? normed * to_acc(w.elem[e]) : normed);
          } else {
            float v = xhat;
            if (a.weight != nullptr) v *= to_acc(w.elem[e]);
            if (a.bias != nullptr) v += to_acc(bias.elem[e]);
            out.elem[e] = from_acc<T>(v);
          }
        }
        store16(a.y + base + p * V, out);
      }
    }
  }
}

template <int kGroup, NormKind K, class T>
__global__ void norm_forward_generic_kernel(NormForwardArgs<T> a) {
  using G = RowGroup<kGroup>;
  __shared__ float scratch[32];
  const float inv_c = 1.0f / static_cast<float>(a.C);
  for (int64_t row = G::first_row(); row < a.rows; row += G::row_step()) {
    const int64_t base = row * a.C;
    const T* h = a.x + base;
    const auto [mean, rstd] = row_stats<kGroup, K>(h, a.C, inv_c, a.eps, scratch);
    for (int c = G::lane(); c < a.C; c += kGroup)
      a.y[base + c] = norm_output<K, T>((to_acc(h[c]) - mean) * rstd, a.weight, a.bias, c);
  }
}

// grad_h = rstd (dx̂ − [Layer] mean(dx̂) − x̂ mean(dx̂ x̂)), dx̂ = grad_y · weight.
template <NormKind K, class T, int kPacks>
__global__ void __launch_bounds__(32 * kNormWarpsPerBlock)
    norm_backward_vec_kernel(NormBackwardArgs<T> a) {
  constexpr int V = Pack16<T>::kSize;
  const int lane = threadIdx.x & 31;
  const int packs = a.C / V;
  const float inv_c = 1.0f / static_cast<float>(a.C);
  for (int64_t row = int64_t(blockIdx.x) * kNormWarpsPerBlock + threadIdx.x / 32; row < a.rows;
       row += int64_t(gridDim.x) * kNormWarpsPerBlock) {
    const int64_t base = row * a.C;
    Pack16<T> h[kPacks], g[kPacks];
    const T* x = a.h + base;
    const T* gy = a.grad_y + base;
    const auto [mean, rstd] = load_row_stats<K>(h, lane, packs, inv_c, a.eps, [&](int j, int p) {
      h[j] = load16(x + p * V);
      g[j] = load16(gy + p * V);
    });
    float sum_dxhat = 0.f, sum_dot = 0.f;
#pragma unroll
    for (int j = 0; j < kPacks; ++j) {
      const int p = lane + 32 * j;
      if (p < packs) {
#pragma unroll
        for (int e = 0; e < V; ++e) {
          const int c = p * V + e;
          const float xhat = (to_acc(h[j].elem[e]) - mean) * rstd;
          const float dxhat =
              to_acc(g[j].elem[e]) * (a.weight != nullptr ? to_acc(a.weight[c]) : 1.f);
          sum_dxhat += dxhat;
          sum_dot += dxhat * xhat;
        }
      }
    }
    const float mean_dot = warp_sum(sum_dot) * inv_c;
    const float mean_dxhat = K == NormKind::Layer ? warp_sum(sum_dxhat) * inv_c : 0.f;
    if (lane == 0) {
      if (a.mean != nullptr) a.mean[row] = mean;
      if (a.rstd != nullptr) a.rstd[row] = rstd;
    }
#pragma unroll
    for (int j = 0; j < kPacks; ++j) {
      const int p = lane + 32 * j;
      if (p < packs) {
        Pack16<T> out;
#pragma unroll
        for (int e = 0; e < V; ++e) {
          const int c = p * V + e;
          const float xhat = (to_acc(h[j].elem[e]) - mean) * rstd;
          const float dxhat =
              to_acc(g[j].elem[e]) * (a.weight != nullptr ? to_acc(a.weight[c]) : 1.f);
          out.elem[e] = from_acc<T>(rstd * (dxhat - mean_dxhat - xhat * mean_dot));
        }
        store16(a.grad_h + base + p * V, out);
      }
    }
  }
}

template <int kGroup, NormKind K, class T>
__global__ void norm_backward_generic_kernel(NormBackwardArgs<T> a) {
  using G = RowGroup<kGroup>;
  __shared__ float scratch[32];
  const float inv_c = 1.0f / static_cast<float>(a.C);
  for (int64_t row = G::first_row(); row < a.rows; row += G::row_step()) {
    const int64_t base = row * a.C;
    const T* h = a.h + base;
    const T* g = a.grad_y + base;
    const auto [mean, rstd] = row_stats<kGroup, K>(h, a.C, inv_c, a.eps, scratch);
    float sum_dxhat = 0.f, sum_dot = 0.f;
    for (int c = G::lane(); c < a.C; c += kGroup) {
      const float xhat = (to_acc(h[c]) - mean) * rstd;
      const float dxhat = to_acc(g[c]) * (a.weight != nullptr ? to_acc(a.weight[c]) : 1.f);
      sum_dxhat += dxhat;
      sum_dot += dxhat * xhat;
    }
    const float mean_dot = G::sum(sum_dot, scratch) * inv_c;
    const float mean_dxhat = K == NormKind::Layer ? G::sum(sum_dxhat, scratch) * inv_c : 0.f;
    if (G::lane() == 0) {
      if (a.mean != nullptr) a.mean[row] = mean;
      if (a.rstd != nullptr) a.rstd[row] = rstd;
    }
    for (int c = G::lane(); c < a.C; c += kGroup) {
      const float xhat = (to_acc(h[c]) - mean) * rstd;
      const float dxhat = to_acc(g[c]) * (a.weight != nullptr ? to_acc(a.weight[c]) : 1.f);
      a.grad_h[base + c] = from_acc<T>(rstd * (dxhat - mean_dxhat - xhat * mean_dot));
    }
  }
}

// Parameter gradients, split over row ranges (blockIdx.y): partial_w[s, c] = Σ_r g x̂ (x̂ rounded
// to T for RMSNorm, as the forward multiplies the rounded value), partial_b[s, c] = Σ_r g.
template <NormKind K, class T>
__global__ void norm_param_grad_kernel(const T* __restrict__ h, const T* __restrict__ grad_y,
                                       const float* __restrict__ mean,
                                       const float* __restrict__ rstd, int64_t rows, int C,
                                       int64_t rows_per_split, float* __restrict__ partial_w,
                                       float* __restrict__ partial_b) {
  __shared__ float scratch_w[8][33], scratch_b[8][33];
  const int c = blockIdx.x * 32 + threadIdx.x;
  const int64_t begin = int64_t(blockIdx.y) * rows_per_split;
  const int64_t end = min(rows, begin + rows_per_split);
  float dw = 0.f, db = 0.f;
  if (c < C) {
    for (int64_t r = begin + threadIdx.y; r < end; r += blockDim.y) {
      const float g = to_acc(grad_y[r * C + c]);
      float xhat = (to_acc(h[r * C + c]) - (mean != nullptr ? mean[r] : 0.f)) * rstd[r];
      if constexpr (K == NormKind::Rms) xhat = round_to<T>(xhat);
      dw += g * xhat;
      db += g;
    }
  }
  scratch_w[threadIdx.y][threadIdx.x] = dw;
  scratch_b[threadIdx.y][threadIdx.x] = db;
  __syncthreads();
  if (threadIdx.y != 0 || c >= C) return;
  for (unsigned i = 1; i < blockDim.y; ++i) {
    dw += scratch_w[i][threadIdx.x];
    db += scratch_b[i][threadIdx.x];
  }
  if (partial_w != nullptr) partial_w[int64_t(blockIdx.y) * C + c] = dw;
  if (partial_b != nullptr) partial_b[int64_t(blockIdx.y) * C + c] = db;
}

// out[c] = Σ_s partial[s, c] (split order: deterministic).
template <class T>
__global__ void sum_splits_kernel(const float* __restrict__ partial, int64_t splits, int C,
                                  T* __restrict__ out) {
  for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += gridDim.x * blockDim.x) {
    float acc = 0.f;
    for (int64_t s = 0; s < splits; ++s) acc += partial[s * C + c];
    out[c] = from_acc<T>(acc);
  }
}

}  // namespace mentor::cuda::kernels
