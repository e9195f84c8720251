#pragma once
// Fused CUDA kernels for the places where PyTorch eager leaves time on the table, as plain C++
// declarations (src/cuda/*.cu). All pointers are device pointers to contiguous row-major data; T is
// float or bf16 (bf16 storage, float arithmetic); work is queued on the current stream.
//
//   softmax_xent        per-row cross-entropy over a large vocabulary, one read of the logits
//   adamw_multi_tensor  one launch updates every parameter
//   flash_attention     causal / left-padded attention, bf16, head dim 64 or 128, never builds S×S
#include <cstdint>
#include <vector>

#include "mentor/core/bf16.hpp"

namespace mentor::cuda {

// ---- softmax cross-entropy -------------------------------------------------------------------
// Per row r of logits [rows, vocab]: lse[r] = log Σ_v exp(logits[r, v]) (one pass, online max) and
// loss[r] = lse[r] − logits[r, target[r]]. Rows whose target equals ignore_index (or lies outside
// [0, vocab)) get loss 0 and are excluded (their lse is still written).
template <class T>
void softmax_xent_forward(const T* logits, const int64_t* targets, int64_t rows, int64_t vocab,
                          int64_t ignore_index, float* loss, float* lse);
// grad_logits[r, v] = row_scale[r] · (exp(logits[r, v] − lse[r]) − [v == target[r]]), one read of
// the logits and one write of the gradient; row_scale is a device array [rows] (null: every row
// scaled by `scale`, else row_scale[r] * scale). Ignored rows get 0.
template <class T>
void softmax_xent_backward(const T* logits, const int64_t* targets, const float* lse,
                           const float* row_scale, float scale, int64_t rows, int64_t vocab,
                           int64_t ignore_index, T* grad_logits);

// ---- AdamW over many tensors in one launch ------------------------------------------------------
// PyTorch's AdamW (decoupled weight decay, bias-corrected moments), step counted from 1:
//   p -= lr · weight_decay · p                       (only when decay is set for the tensor)
//   m = β1 m + (1 − β1) g;   v = β2 v + (1 − β2) g²    with g = grad · grad_scale
//   p -= lr / (1 − β1^step) · m / (sqrt(v / (1 − β2^step)) + eps)
// Parameters and gradients are T; the moments are float32 (bf16 parameters keep full-precision
// optimizer state).
template <class T>
struct AdamWTensor {
  T* param = nullptr;
  const T* grad = nullptr;
  float* exp_avg = nullptr;
  float* exp_avg_sq = nullptr;
  int64_t numel = 0;
  bool weight_decay = true;
};
struct AdamWHyper {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
  int64_t step = 1;
  float grad_scale = 1.0f;  // e.g. the gradient-clipping factor, applied on the fly
};
template <class T>
void adamw_multi_tensor(const std::vector<AdamWTensor<T>>& tensors, const AdamWHyper& hyper);

// Σ over every tensor of Σ g² (float, on the device: *out), for global-norm gradient clipping.
template <class T>
void squared_norm_multi_tensor(const std::vector<const T*>& grads,
                               const std::vector<int64_t>& numels, float* out);

// ---- flash attention (bf16, head dim 64 or 128) -------------------------------------------------
// q [B, H, Sq, D], k and v [B, Hk, Sk, D], out [B, H, Sq, D], contiguous; Hk divides H (query head
// h reads kv head h / (H / Hk)). Query i sits at key position i + q_offset (q_offset = Sk − Sq for
// the last Sq positions of a KV cache). Key j is visible to query i when j >= key_start[b]
// (left padding: key_start is a device array [B] of padded-prefix lengths, or null) and, when
// causal, j <= i + q_offset. Softmax of scale · q·k in float; a query that sees no key gets 0 and
// lse = -inf. lse [B, H, Sq] (float) is saved for the backward.
struct FlashAttentionShape {
  int64_t batch = 0, heads = 0, kv_heads = 0, q_len = 0, kv_len = 0, head_dim = 0;
  int64_t q_offset = 0;
  bool causal = false;
  float scale = 0.f;  // 0: 1/sqrt(head_dim)
};
bool flash_attention_supported(int64_t head_dim);
void flash_attention_forward(const bf16* q, const bf16* k, const bf16* v, const int32_t* key_start,
                             const FlashAttentionShape& shape, bf16* out, float* lse);
// Gradients given grad_out and the forward's out and lse; grad_q [B, H, Sq, D], grad_k and grad_v
// [B, Hk, Sk, D] are overwritten (kv heads shared by several query heads get the sum).
void flash_attention_backward(const bf16* q, const bf16* k, const bf16* v, const bf16* out,
                              const bf16* grad_out, const float* lse, const int32_t* key_start,
                              const FlashAttentionShape& shape, bf16* grad_q, bf16* grad_k,
                              bf16* grad_v);

}  // namespace mentor::cuda
