#pragma once
// The CUDA launchers of ops/attention.hpp: plain C++ declarations (no CUDA header, no tensor, no
// autograd), defined for float and bf16 in src/cuda/attention.cu.
#include <cstdint>

#include "mentor/core/shape.hpp"

namespace mentor {

// Which keys each query attends to (the values are the launchers' ABI).
enum class MaskKind : int { None = 0, Causal = 1, Explicit = 2 };

namespace cuda {
// q [B, H, Sq, Dh], k [B, Hk, Sk, Dh], v [B, Hk, Sk, Dv], out [B, H, Sq, Dv], all contiguous;
// head h reads kv head h / (H / Hk). mask_kind None: every key; Causal: query i sees keys
// j <= i + Sk − Sq; Explicit: mask[b*ms[0] + h*ms[1] + i*ms[2] + j*ms[3]] (true = attend;
// strides of 0 broadcast). Fully masked rows give 0. lse [B, H, Sq] (float) receives each row's
// logsumexp of the scaled, masked scores (−inf for a fully masked row). Softmax in float.
template <class T>
void attention_forward(const T* q, const T* k, const T* v, MaskKind mask_kind, const bool* mask,
                       const Strides& mask_strides, int64_t B, int64_t H, int64_t Hk, int64_t Sq,
                       int64_t Sk, int64_t Dh, int64_t Dv, float scale, T* out, float* lse);
// Gradients of the above given grad_out [B, H, Sq, Dv] and the forward's out and lse; grad_q,
// grad_k, grad_v (shapes of q, k, v) are overwritten. P is recomputed from lse.
template <class T>
void attention_backward(const T* q, const T* k, const T* v, const T* out, const T* grad_out,
                        const float* lse, MaskKind mask_kind, const bool* mask,
                        const Strides& mask_strides, int64_t B, int64_t H, int64_t Hk, int64_t Sq,
                        int64_t Sk, int64_t Dh, int64_t Dv, float scale, T* grad_q, T* grad_k,
                        T* grad_v);
}  // namespace cuda

}  // namespace mentor
