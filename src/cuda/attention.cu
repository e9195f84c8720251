// Launchers of ops/attention.hpp. bf16 with head dim 64 or 128 and no mask or a causal mask goes
// to the flash-attention kernels (flash_attention.cu: S×S never materialised). Everything else
// (float, other head dims, explicit masks) takes the general path: per chunk of (batch, kv head)
// pairs, the scores of all query heads sharing the kv head are one batched cuBLASLt GEMM into
// float, a row kernel applies the mask and the softmax, and a second GEMM multiplies by V. The
// chunk is sized so the score buffers stay under a fixed budget.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <vector>

#include "mentor/backend/cuda/fused.hpp"
#include "mentor/backend/cuda/gemm.hpp"
#include "mentor/backend/cuda/kernels/common.cuh"
#include "mentor/backend/cuda/kernels/rows.cuh"
#include "mentor/backend/cuda/scratch.hpp"
#include "mentor/backend/launch/attention.hpp"
#include "mentor/core/cuda_api.hpp"

namespace mentor {

namespace cuda::kernels {
namespace {

constexpr size_t kScoreBudgetBytes = size_t{1} << 30;

// Geometry of one chunk of the general path. Rows of a chunk: c in [0, chunk) (batch index
// bg = first + c over B·Hk), then rr in [0, rep·Sq) (query head g·rep + rr / Sq, query rr % Sq).
struct AttnRows {
  int64_t first;  // first (batch, kv head) pair of the chunk
  int64_t rep, Sq, Sk, Hk, H;
  MaskKind kind;
  const bool* mask;
  int64_t ms[4];
  float scale;

  __device__ bool visible(int64_t row, int64_t j) const {
    if (kind == MaskKind::None) return true;
    const int64_t i = row % Sq;
    if (kind == MaskKind::Causal) return j <= i + Sk - Sq;
    const int64_t c = row / (rep * Sq), rr = row % (rep * Sq);
    const int64_t bg = first + c, b = bg / Hk, h = (bg % Hk) * rep + rr / Sq;
    return mask[b * ms[0] + h * ms[1] + i * ms[2] + j * ms[3]];
  }
  // Row of the chunk -> row of [B, H, Sq] (and of [B, H, Sq, Dv] / Dv).
  __device__ int64_t global_row(int64_t row) const { return first * rep * Sq + row; }
};

// P = softmax over the visible scores of each row (scores already scaled); lse per row
// (-inf and P = 0 for a row that sees no key).
template <int kGroup, class T>
__global__ void attn_softmax_forward_kernel(const float* scores, T* probs, float* __restrict__ lse,
                                            int64_t rows, AttnRows a) {
  using G = RowGroup<kGroup>;
  __shared__ MaxSum scratch[32];
  for (int64_t r = G::first_row(); r < rows; r += G::row_step()) {
    const float* s = scores + r * a.Sk;
    T* p = probs + r * a.Sk;
    MaxSum st{-INFINITY, 0.f};
    for (int64_t j = G::lane(); j < a.Sk; j += kGroup)
      if (a.visible(r, j)) st = max_sum_add(st, s[j]);
    st = G::max_sum(st, scratch);
    const float row_lse = st.m == -INFINITY ? -INFINITY : st.m + logf(st.s);
    if (G::lane() == 0) lse[a.global_row(r)] = row_lse;
    for (int64_t j = G::lane(); j < a.Sk; j += kGroup) {
      const bool keep = row_lse != -INFINITY && a.visible(r, j);
      p[j] = from_acc<T>(keep ? exp_for<T>(s[j] - row_lse) : 0.f);
    }
  }
}

// P recomputed from the saved lse.
template <int kGroup, class T>
__global__ void attn_probs_kernel(const float* __restrict__ scores, const float* __restrict__ lse,
                                  T* __restrict__ probs, int64_t rows, AttnRows a) {
  using G = RowGroup<kGroup>;
  for (int64_t r = G::first_row(); r < rows; r += G::row_step()) {
    const float row_lse = lse[a.global_row(r)];
    const float* s = scores + r * a.Sk;
    T* p = probs + r * a.Sk;
    for (int64_t j = G::lane(); j < a.Sk; j += kGroup) {
      const bool keep = row_lse != -INFINITY && a.visible(r, j);
      p[j] = from_acc<T>(keep ? exp_for<T>(s[j] - row_lse) : 0.f);
    }
  }
}

// dS = P ∘ (dP − rowsum(dO ∘ O)) · scale. grad_scores holds dP on entry; dS goes to ds (which may
// be the same float buffer).
template <int kGroup, class T>
__global__ void attn_grad_scores_kernel(const float* grad_scores, const T* __restrict__ probs,
                                        const T* __restrict__ out, const T* __restrict__ grad_out,
                                        int64_t Dv, T* ds, int64_t rows, AttnRows a) {
  using G = RowGroup<kGroup>;
  __shared__ float scratch[32];
  for (int64_t r = G::first_row(); r < rows; r += G::row_step()) {
    const int64_t g_row = a.global_row(r);
    const float delta = G::row_sum(Dv, scratch, [&](int64_t d) {
      return to_acc(grad_out[g_row * Dv + d]) * to_acc(out[g_row * Dv + d]);
    });
    const float* dp = grad_scores + r * a.Sk;
    const T* p = probs + r * a.Sk;
    T* dsr = ds + r * a.Sk;
    for (int64_t j = G::lane(); j < a.Sk; j += kGroup) {
      const float pj = to_acc(p[j]);
      dsr[j] = from_acc<T>(pj * (dp[j] - delta) * a.scale);
    }
  }
}

// Scores (float) = scale · Q Kᵀ for `count` (batch, kv head) pairs starting at `first`.
template <class T>
void attn_scores(const T* q, const T* k, int64_t first, int64_t count, int64_t rep, int64_t Sq,
                 int64_t Sk, int64_t Dh, float scale, float* scores) {
  const int64_t m = rep * Sq;
  const T* qa = q + first * m * Dh;
  const T* ka = k + first * Sk * Dh;
  if constexpr (std::is_same_v<T, float>) {
    gemm_strided_batched<float>(false, true, count, m, Sk, Dh, scale, qa, Dh, m * Dh, ka, Dh,
                                Sk * Dh, 0.f, scores, Sk, m * Sk);
  } else {
    gemm_strided_batched_f32out(false, true, count, m, Sk, Dh, scale, qa, Dh, m * Dh, ka, Dh,
                                Sk * Dh, 0.f, scores, Sk, m * Sk);
  }
}

// The flash kernels move 16-byte chunks: every tensor must start 16-byte aligned (rows of 64 or
// 128 bf16 keep that alignment), otherwise the general path runs.
bool use_flash(bool is_bf16, MaskKind mask_kind, int64_t Dh, int64_t Dv,
               std::initializer_list<const void*> pointers) {
  if (!(is_bf16 && (mask_kind == MaskKind::None || mask_kind == MaskKind::Causal) && Dh == Dv &&
        flash_attention_supported(Dh)))
    return false;
  for (const void* p : pointers)
    if (!is_aligned(p, 16)) return false;
  return true;
}

AttnRows make_rows(MaskKind mask_kind, const bool* mask, const Strides& mask_strides, int64_t H,
                   int64_t Hk, int64_t Sq, int64_t Sk, float scale) {
  AttnRows a{};
  a.rep = H / Hk;
  a.Sq = Sq;
  a.Sk = Sk;
  a.Hk = Hk;
  a.H = H;
  a.kind = mask_kind;
  a.mask = mask;
  for (int i = 0; i < 4; ++i)
    a.ms[i] = mask_kind == MaskKind::Explicit && i < mask_strides.rank() ? mask_strides[i] : 0;
  a.scale = scale;
  return a;
}

}  // namespace
}  // namespace cuda::kernels

template <class T>
void cuda::attention_forward(const T* q, const T* k, const T* v, MaskKind mask_kind,
                             const bool* mask, const Strides& mask_strides, int64_t B, int64_t H,
                             int64_t Hk, int64_t Sq, int64_t Sk, int64_t Dh, int64_t Dv,
                             float scale, T* out, float* lse) {
  namespace kn = cuda::kernels;
  MENTOR_CHECK(Hk >= 1 && H % Hk == 0, "cuda::attention_forward: ", Hk, " kv heads for ", H,
               " query heads");
  MENTOR_CHECK(mask_kind != MaskKind::Explicit || mask != nullptr,
               "cuda::attention_forward: explicit mask missing");
  if (B * H * Sq == 0) return;
  using DT = cuda::device_t<T>;
  if (Sk == 0) {
    // No keys: every row is fully masked (zeros, lse = -inf).
    if (Dv > 0)
      MENTOR_CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(T) * static_cast<size_t>(B * H * Sq * Dv),
                                        cuda::stream()));
    // A fill kernel on the stream, not a host copy: no host synchronisation, so a decode step
    // with an empty cache can be captured into a graph.
    cuda::fill<float>(lse, B * H * Sq, -INFINITY);
    return;
  }
  if constexpr (std::is_same_v<T, bf16>) {
    if (kn::use_flash(true, mask_kind, Dh, Dv, {q, k, v, out})) {
      cuda::FlashAttentionShape shape;
      shape.batch = B, shape.heads = H, shape.kv_heads = Hk, shape.q_len = Sq, shape.kv_len = Sk;
      shape.head_dim = Dh, shape.q_offset = Sk - Sq, shape.causal = mask_kind == MaskKind::Causal;
      shape.scale = scale;
      cuda::flash_attention_forward(q, k, v, nullptr, shape, out, lse);
      return;
    }
  }
  const int64_t rep = H / Hk, m = rep * Sq;
  const size_t per_pair = static_cast<size_t>(m * Sk) * (sizeof(float) + sizeof(T));
  const int64_t chunk = std::max<int64_t>(
      1, std::min<int64_t>(B * Hk, static_cast<int64_t>(kn::kScoreBudgetBytes / per_pair)));
  cuda::Scratch scores(static_cast<size_t>(chunk * m * Sk) * sizeof(float));
  cuda::Scratch probs(std::is_same_v<T, float> ? 0
                                               : static_cast<size_t>(chunk * m * Sk) * sizeof(T));
  kn::AttnRows rows = kn::make_rows(mask_kind, mask, mask_strides, H, Hk, Sq, Sk, scale);
  for (int64_t first = 0; first < B * Hk; first += chunk) {
    const int64_t count = std::min(chunk, B * Hk - first);
    kn::attn_scores(q, k, first, count, rep, Sq, Sk, Dh, scale, scores.as<float>());
    rows.first = first;
    // float: the probabilities overwrite the scores in place (each row reads, then writes itself).
    DT* p = std::is_same_v<T, float> ? reinterpret_cast<DT*>(scores.as<float>()) : probs.as<DT>();
    MENTOR_LAUNCH_ROWS(kn::attn_softmax_forward_kernel, Sk, count * m,
                       static_cast<const float*>(scores.as<float>()), p, lse, count * m, rows);
    cuda::gemm_strided_batched<T>(false, false, count, m, Dv, Sk, 1.f,
                                  reinterpret_cast<const T*>(p), Sk, m * Sk, v + first * Sk * Dv,
                                  Dv, Sk * Dv, 0.f, out + first * m * Dv, Dv, m * Dv);
  }
}

template <class T>
void cuda::attention_backward(const T* q, const T* k, const T* v, const T* out, const T* grad_out,
                              const float* lse, MaskKind mask_kind, const bool* mask,
                              const Strides& mask_strides, int64_t B, int64_t H, int64_t Hk,
                              int64_t Sq, int64_t Sk, int64_t Dh, int64_t Dv, float scale,
                              T* grad_q, T* grad_k, T* grad_v) {
  namespace kn = cuda::kernels;
  using DT = cuda::device_t<T>;
  MENTOR_CHECK(Hk >= 1 && H % Hk == 0, "cuda::attention_backward: ", Hk, " kv heads for ", H,
               " query heads");
  const size_t q_bytes = sizeof(T) * static_cast<size_t>(B * H * Sq * Dh);
  const size_t k_bytes = sizeof(T) * static_cast<size_t>(B * Hk * Sk * Dh);
  const size_t v_bytes = sizeof(T) * static_cast<size_t>(B * Hk * Sk * Dv);
  if (B * H * Sq == 0 || Sk == 0) {
    if (q_bytes) MENTOR_CUDA_CHECK(cudaMemsetAsync(grad_q, 0, q_bytes, cuda::stream()));
    if (k_bytes) MENTOR_CUDA_CHECK(cudaMemsetAsync(grad_k, 0, k_bytes, cuda::stream()));
    if (v_bytes) MENTOR_CUDA_CHECK(cudaMemsetAsync(grad_v, 0, v_bytes, cuda::stream()));
    return;
  }
  if constexpr (std::is_same_v<T, bf16>) {
    if (kn::use_flash(true, mask_kind, Dh, Dv, {q, k, v, out, grad_out, grad_q, grad_k, grad_v})) {
      cuda::FlashAttentionShape shape;
      shape.batch = B, shape.heads = H, shape.kv_heads = Hk, shape.q_len = Sq, shape.kv_len = Sk;
      shape.head_dim = Dh, shape.q_offset = Sk - Sq, shape.causal = mask_kind == MaskKind::Causal;
      shape.scale = scale;
      cuda::flash_attention_backward(q, k, v, out, grad_out, lse, nullptr, shape, grad_q, grad_k,
                                     grad_v);
      return;
    }
  }
  const int64_t rep = H / Hk, m = rep * Sq;
  const size_t per_pair = static_cast<size_t>(m * Sk) * (sizeof(float) + 2 * sizeof(T));
  const int64_t chunk = std::max<int64_t>(
      1, std::min<int64_t>(B * Hk, static_cast<int64_t>(kn::kScoreBudgetBytes / per_pair)));
  cuda::Scratch scores(static_cast<size_t>(chunk * m * Sk) * sizeof(float));
  cuda::Scratch probs(static_cast<size_t>(chunk * m * Sk) * sizeof(T));
  cuda::Scratch grad_scores_t(
      std::is_same_v<T, float> ? 0 : static_cast<size_t>(chunk * m * Sk) * sizeof(T));
  kn::AttnRows rows = kn::make_rows(mask_kind, mask, mask_strides, H, Hk, Sq, Sk, scale);
  for (int64_t first = 0; first < B * Hk; first += chunk) {
    const int64_t count = std::min(chunk, B * Hk - first);
    rows.first = first;
    const T* qa = q + first * m * Dh;
    const T* ka = k + first * Sk * Dh;
    const T* va = v + first * Sk * Dv;
    const T* goa = grad_out + first * m * Dv;
    kn::attn_scores(q, k, first, count, rep, Sq, Sk, Dh, scale, scores.as<float>());
    MENTOR_LAUNCH_ROWS(kn::attn_probs_kernel, Sk, count * m,
                       static_cast<const float*>(scores.as<float>()), lse, probs.as<DT>(),
                       count * m, rows);
    // dP = dO Vᵀ (float), over the scores.
    if constexpr (std::is_same_v<T, float>) {
      cuda::gemm_strided_batched<float>(false, true, count, m, Sk, Dv, 1.f, goa, Dv, m * Dv, va, Dv,
                                        Sk * Dv, 0.f, scores.as<float>(), Sk, m * Sk);
    } else {
      cuda::gemm_strided_batched_f32out(false, true, count, m, Sk, Dv, 1.f, goa, Dv, m * Dv, va, Dv,
                                        Sk * Dv, 0.f, scores.as<float>(), Sk, m * Sk);
    }
    DT* ds = std::is_same_v<T, float> ? reinterpret_cast<DT*>(scores.as<float>())
                                      : grad_scores_t.as<DT>();
    MENTOR_LAUNCH_ROWS(kn::attn_grad_scores_kernel, Sk, count * m,
                       static_cast<const float*>(scores.as<float>()),
                       static_cast<const DT*>(probs.as<DT>()), cuda::device_ptr(out),
                       cuda::device_ptr(grad_out), Dv, ds, count * m, rows);
    const T* p_t = reinterpret_cast<const T*>(probs.as<DT>());
    const T* ds_t = reinterpret_cast<const T*>(ds);
    // dV = Pᵀ dO, dQ = dS K, dK = dSᵀ Q (the rep query heads of a kv head sum in the GEMM).
    cuda::gemm_strided_batched<T>(true, false, count, Sk, Dv, m, 1.f, p_t, Sk, m * Sk, goa, Dv,
                                  m * Dv, 0.f, grad_v + first * Sk * Dv, Dv, Sk * Dv);
    cuda::gemm_strided_batched<T>(false, false, count, m, Dh, Sk, 1.f, ds_t, Sk, m * Sk, ka, Dh,
                                  Sk * Dh, 0.f, grad_q + first * m * Dh, Dh, m * Dh);
    cuda::gemm_strided_batched<T>(true, false, count, Sk, Dh, m, 1.f, ds_t, Sk, m * Sk, qa, Dh,
                                  m * Dh, 0.f, grad_k + first * Sk * Dh, Dh, Sk * Dh);
  }
}

#define MENTOR_INSTANTIATE_ATTENTION(T)                                                           \
  template void cuda::attention_forward<T>(const T*, const T*, const T*, MaskKind, const bool*,   \
                                           const Strides&, int64_t, int64_t, int64_t, int64_t,    \
                                           int64_t, int64_t, int64_t, float, T*, float*);         \
  template void cuda::attention_backward<T>(const T*, const T*, const T*, const T*, const T*,     \
                                            const float*, MaskKind, const bool*, const Strides&,  \
                                            int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, \
                                            int64_t, float, T*, T*, T*);
MENTOR_INSTANTIATE_ATTENTION(float)
MENTOR_INSTANTIATE_ATTENTION(bf16)

}  // namespace mentor
