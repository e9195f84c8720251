// Softmax cross-entropy: the launchers of ops/loss.hpp and the per-row fused API of fused.hpp.
// Forward: one pass over each row of logits (chunks of 16-byte packs kept in registers: chunk max,
// then Σ exp with one exp per element, merged into a running (max, sum)), giving lse and the row
// loss. Backward: one read of the logits and one write of the gradient. float and bf16.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "mentor/backend/cuda/fused.hpp"
#include "mentor/backend/cuda/kernels/common.cuh"
#include "mentor/backend/cuda/kernels/rows.cuh"
#include "mentor/backend/cuda/scratch.hpp"
#include "mentor/backend/launch/loss.hpp"
#include "mentor/core/cuda_api.hpp"

namespace mentor {

namespace cuda::kernels {
namespace {

constexpr int kChunkPacks = 4;  // 16-byte packs per thread held at once (64 bytes in flight)

template <class T>
struct XentForwardArgs {
  const T* logits;
  const int64_t* targets;
  const T* valid;  // per-sample weights or null
  int64_t rows, vocab, rows_per_sample;
  int64_t ignore_index;     // rows with this target give 0 (INT64_MIN: none)
  float out_of_range_loss;  // loss of a row whose target is outside [0, vocab)
  float* lse;               // [rows]
  float* row_loss;          // [rows]
};

template <int kGroup, class T, bool kVector>
__global__ void xent_forward_kernel(XentForwardArgs<T> a) {
  using G = RowGroup<kGroup>;
  __shared__ MaxSum scratch[32];
  constexpr int V = Pack16<T>::kSize;
  for (int64_t r = G::first_row(); r < a.rows; r += G::row_step()) {
    const T* row = a.logits + r * a.vocab;
    MaxSum st{-INFINITY, 0.f};
    int64_t tail_begin = 0;
    if constexpr (kVector) {
      const int64_t packs = a.vocab / V;
      for (int64_t p0 = 0; p0 < packs; p0 += int64_t(kGroup) * kChunkPacks) {
        Pack16<T> chunk[kChunkPacks];
        float m = -INFINITY;
#pragma unroll
        for (int j = 0; j < kChunkPacks; ++j) {
          const int64_t p = p0 + G::lane() + int64_t(j) * kGroup;
          if (p < packs) {
            chunk[j] = load16(row + p * V);
#pragma unroll
            for (int e = 0; e < V; ++e) m = fmaxf(m, to_acc(chunk[j].elem[e]));
          }
        }
        if (m == -INFINITY) {
          // Only -inf (or NaN) values: a NaN must still poison the sum.
#pragma unroll
          for (int j = 0; j < kChunkPacks; ++j) {
            const int64_t p = p0 + G::lane() + int64_t(j) * kGroup;
            if (p < packs) {
#pragma unroll
              for (int e = 0; e < V; ++e)
                if (to_acc(chunk[j].elem[e]) != to_acc(chunk[j].elem[e])) st.s = NAN;
            }
          }
          continue;
        }
        float s = 0.f;
#pragma unroll
        for (int j = 0; j < kChunkPacks; ++j) {
          const int64_t p = p0 + G::lane() + int64_t(j) * kGroup;
          if (p < packs) {
#pragma unroll
            for (int e = 0; e < V; ++e) s += exp_for<T>(to_acc(chunk[j].elem[e]) - m);
          }
        }
        st = max_sum_merge(st, MaxSum{m, s});
      }
      tail_begin = packs * V;
    }
    for (int64_t v = tail_begin + G::lane(); v < a.vocab; v += kGroup)
      st = max_sum_add(st, to_acc(row[v]));
    st = G::max_sum(st, scratch);
    if (G::lane() == 0) {
      const float row_lse = st.m + logf(st.s);
      a.lse[r] = row_lse;
      const int64_t t = a.targets[r];
      float loss;
      if (t == a.ignore_index) {
        loss = 0.f;
      } else if (t < 0 || t >= a.vocab) {
        loss = a.out_of_range_loss;
      } else {
        const float w = a.valid != nullptr ? to_acc(a.valid[r / a.rows_per_sample]) : 1.f;
        loss = w == 0.f ? 0.f : w * (row_lse - to_acc(row[t]));
      }
      a.row_loss[r] = loss;
    }
  }
}

// launch_rows for the kernels that read whole 16-byte packs when `vector`: calls
// launch.template operator()<kGroup, kVector>(blocks).
template <class Launch>
void launch_xent_rows(int64_t vocab, int64_t rows, bool vector, Launch&& launch) {
  launch_rows(vocab, rows, [&]<int kGroup>(unsigned blocks) {
    if (vector) {
      launch.template operator()<kGroup, true>(blocks);
    } else {
      launch.template operator()<kGroup, false>(blocks);
    }
  });
}

template <class T>
void launch_xent_forward(const XentForwardArgs<T>& a) {
  if (a.rows <= 0) return;
  const bool vector = a.vocab % Pack16<T>::kSize == 0 && is_aligned(a.logits, 16);
  launch_xent_rows(a.vocab, a.rows, vector, [&]<int kGroup, bool kVector>(unsigned blocks) {
    xent_forward_kernel<kGroup, T, kVector><<<blocks, kRowBlockThreads, 0, stream()>>>(a);
  });
  MENTOR_CUDA_CHECK_LAUNCH("xent_forward_kernel");
}

// One block: inv_denom and the mean loss (double sum in a fixed order).
template <class T>
__global__ void xent_finish_kernel(const float* __restrict__ row_loss, int64_t rows,
                                   const T* __restrict__ valid, int64_t samples,
                                   int64_t rows_per_sample, float* __restrict__ inv_denom,
                                   T* __restrict__ loss) {
  __shared__ double scratch[32];
  double total = 0.0, valid_sum = 0.0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x)
    total += static_cast<double>(row_loss[r]);
  if (valid != nullptr)
    for (int64_t b = threadIdx.x; b < samples; b += blockDim.x)
      valid_sum += static_cast<double>(to_acc(valid[b]));
  total = block_sum(total, scratch);
  valid_sum = block_sum(valid_sum, scratch);
  if (threadIdx.x == 0) {
    const double denom = valid != nullptr
                             ? fmax(valid_sum * static_cast<double>(rows_per_sample), 1.0)
                             : static_cast<double>(rows);
    const float inv = static_cast<float>(1.0 / denom);
    inv_denom[0] = inv;
    loss[0] = from_acc<T>(total * static_cast<double>(inv));
  }
}

template <class T>
struct XentBackwardArgs {
  const T* logits;
  const int64_t* targets;
  const float* lse;
  int64_t rows, vocab;
  // Row coefficient: scale · (row_scale ? row_scale[r] : 1) · (valid ? valid[r / rps] : 1)
  // · (grad_loss ? grad_loss[0] : 1) · (inv_denom ? inv_denom[0] : 1).
  float scale;
  const float* row_scale;
  const T* valid;
  int64_t rows_per_sample;
  const T* grad_loss;
  const float* inv_denom;
  int64_t ignore_index;
  T* grad;
};

template <int kGroup, class T, bool kVector>
__global__ void xent_backward_kernel(XentBackwardArgs<T> a) {
  using G = RowGroup<kGroup>;
  constexpr int V = Pack16<T>::kSize;
  float common = a.scale;
  if (a.grad_loss != nullptr) common *= to_acc(a.grad_loss[0]);
  if (a.inv_denom != nullptr) common *= a.inv_denom[0];
  for (int64_t r = G::first_row(); r < a.rows; r += G::row_step()) {
    const T* row = a.logits + r * a.vocab;
    T* out = a.grad + r * a.vocab;
    const int64_t t = a.targets[r];
    float coef = common;
    if (a.row_scale != nullptr) coef *= a.row_scale[r];
    if (a.valid != nullptr) coef *= to_acc(a.valid[r / a.rows_per_sample]);
    if (t == a.ignore_index) coef = 0.f;
    const float row_lse = a.lse[r];
    int64_t tail_begin = 0;
    if constexpr (kVector) {
      const int64_t packs = a.vocab / V;
      for (int64_t p = G::lane(); p < packs; p += kGroup) {
        Pack16<T> out_pack;
        if (coef == 0.f) {
#pragma unroll
          for (int e = 0; e < V; ++e) out_pack.elem[e] = from_acc<T>(0.f);
        } else {
          const Pack16<T> in = load16(row + p * V);
#pragma unroll
          for (int e = 0; e < V; ++e) {
            const float prob = exp_for<T>(to_acc(in.elem[e]) - row_lse);
            out_pack.elem[e] = from_acc<T>(coef * (p * V + e == t ? prob - 1.f : prob));
          }
        }
        store16(out + p * V, out_pack);
      }
      tail_begin = packs * V;
    }
    for (int64_t v = tail_begin + G::lane(); v < a.vocab; v += kGroup) {
      if (coef == 0.f) {
        out[v] = from_acc<T>(0.f);
      } else {
        const float prob = exp_for<T>(to_acc(row[v]) - row_lse);
        out[v] = from_acc<T>(coef * (v == t ? prob - 1.f : prob));
      }
    }
  }
}

template <class T>
void launch_xent_backward(const XentBackwardArgs<T>& a) {
  if (a.rows <= 0) return;
  const bool vector =
      a.vocab % Pack16<T>::kSize == 0 && is_aligned(a.logits, 16) && is_aligned(a.grad, 16);
  launch_xent_rows(a.vocab, a.rows, vector, [&]<int kGroup, bool kVector>(unsigned blocks) {
    xent_backward_kernel<kGroup, T, kVector><<<blocks, kRowBlockThreads, 0, stream()>>>(a);
  });
  MENTOR_CUDA_CHECK_LAUNCH("xent_backward_kernel");
}

}  // namespace
}  // namespace cuda::kernels

// ---- ops/loss.hpp ------------------------------------------------------------------------------
template <class T>
void cuda::cross_entropy_forward(const T* logits, const int64_t* targets, const T* valid,
                                 int64_t rows, int64_t vocab, int64_t rows_per_sample,
                                 acc_t<T>* lse, acc_t<T>* inv_denom, T* loss) {
  using DT = cuda::device_t<T>;
  const int64_t rps = rows_per_sample > 0 ? rows_per_sample : 1;
  cuda::Scratch row_loss(sizeof(float) * static_cast<size_t>(rows > 0 ? rows : 1));
  cuda::kernels::XentForwardArgs<DT> a{cuda::device_ptr(logits),
                                       targets,
                                       cuda::device_ptr(valid),
                                       rows,
                                       vocab,
                                       rps,
                                       INT64_MIN,
                                       NAN,
                                       lse,
                                       row_loss.as<float>()};
  cuda::kernels::launch_xent_forward(a);
  cuda::kernels::xent_finish_kernel<DT><<<1, 1024, 0, cuda::stream()>>>(
      row_loss.as<float>(), rows, cuda::device_ptr(valid), valid != nullptr ? rows / rps : 0, rps,
      inv_denom, cuda::device_ptr(loss));
  MENTOR_CUDA_CHECK_LAUNCH("xent_finish_kernel");
}

template <class T>
void cuda::cross_entropy_backward(const T* logits, const int64_t* targets, const T* valid,
                                  int64_t rows, int64_t vocab, int64_t rows_per_sample,
                                  const acc_t<T>* lse, const acc_t<T>* inv_denom,
                                  const T* grad_loss, T* grad_logits) {
  using DT = cuda::device_t<T>;
  cuda::kernels::XentBackwardArgs<DT> a{cuda::device_ptr(logits),
                                        targets,
                                        lse,
                                        rows,
                                        vocab,
                                        1.0f,
                                        nullptr,
                                        cuda::device_ptr(valid),
                                        rows_per_sample > 0 ? rows_per_sample : 1,
                                        cuda::device_ptr(grad_loss),
                                        inv_denom,
                                        INT64_MIN,
                                        cuda::device_ptr(grad_logits)};
  cuda::kernels::launch_xent_backward(a);
}

// ---- fused.hpp
// -----------------------------------------------------------------------------------
template <class T>
void cuda::softmax_xent_forward(const T* logits, const int64_t* targets, int64_t rows,
                                int64_t vocab, int64_t ignore_index, float* loss, float* lse) {
  using DT = cuda::device_t<T>;
  cuda::kernels::XentForwardArgs<DT> a{
      cuda::device_ptr(logits), targets, nullptr, rows, vocab, 1, ignore_index, 0.f, lse, loss};
  cuda::kernels::launch_xent_forward(a);
}

template <class T>
void cuda::softmax_xent_backward(const T* logits, const int64_t* targets, const float* lse,
                                 const float* row_scale, float scale, int64_t rows, int64_t vocab,
                                 int64_t ignore_index, T* grad_logits) {
  using DT = cuda::device_t<T>;
  cuda::kernels::XentBackwardArgs<DT> a{cuda::device_ptr(logits),
                                        targets,
                                        lse,
                                        rows,
                                        vocab,
                                        scale,
                                        row_scale,
                                        nullptr,
                                        1,
                                        nullptr,
                                        nullptr,
                                        ignore_index,
                                        cuda::device_ptr(grad_logits)};
  cuda::kernels::launch_xent_backward(a);
}

#define MENTOR_INSTANTIATE_LOSS(T)                                                                 \
  template void cuda::cross_entropy_forward<T>(const T*, const int64_t*, const T*, int64_t,        \
                                               int64_t, int64_t, acc_t<T>*, acc_t<T>*, T*);        \
  template void cuda::cross_entropy_backward<T>(const T*, const int64_t*, const T*, int64_t,       \
                                                int64_t, int64_t, const acc_t<T>*,                 \
                                                const acc_t<T>*, const T*, T*);                    \
  template void cuda::softmax_xent_forward<T>(const T*, const int64_t*, int64_t, int64_t, int64_t, \
                                              float*, float*);                                     \
  template void cuda::softmax_xent_backward<T>(                                                    \
      const T*, const int64_t*, const float*, const float*, float, int64_t, int64_t, int64_t, T*);
MENTOR_INSTANTIATE_LOSS(float)
MENTOR_INSTANTIATE_LOSS(bf16)

}  // namespace mentor
