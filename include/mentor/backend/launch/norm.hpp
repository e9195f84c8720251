#pragma once
// The CUDA launchers of ops/norm.hpp: plain C++ declarations (no CUDA header, no tensor, no
// autograd), defined for float and bf16 in src/cuda/norm.cu.
#include <cstdint>

namespace mentor {

namespace cuda {
// All tensors contiguous; x, y, grad_y, grad_x are [rows, C]; weight and bias [C] may be null (= 1
// and 0). Statistics in float. Backward outputs grad_weight / grad_bias (may be null: not wanted)
// are overwritten with the full sums over rows.
//
// RMSNorm (LlamaGen): y = T(x * rsqrt(mean(x^2) + eps)) * weight (rounded to T before the weight).
template <class T>
void rms_norm_forward(const T* x, const T* weight, T* y, int64_t rows, int64_t C, float eps);
template <class T>
void rms_norm_backward(const T* x, const T* weight, const T* grad_y, T* grad_x, T* grad_weight,
                       int64_t rows, int64_t C, float eps);
// LayerNorm over the last dimension (biased variance).
template <class T>
void layer_norm_forward(const T* x, const T* weight, const T* bias, T* y, int64_t rows, int64_t C,
                        float eps);
template <class T>
void layer_norm_backward(const T* x, const T* weight, const T* grad_y, T* grad_x, T* grad_weight,
                         T* grad_bias, int64_t rows, int64_t C, float eps);
// GroupNorm: x [N, C, spatial]; group g of sample n is the contiguous block of channels
// [g*C/groups, (g+1)*C/groups) over all spatial positions.
template <class T>
void group_norm_forward(const T* x, const T* weight, const T* bias, T* y, int64_t N, int64_t C,
                        int64_t spatial, int64_t groups, float eps);
template <class T>
void group_norm_backward(const T* x, const T* weight, const T* grad_y, T* grad_x, T* grad_weight,
                         T* grad_bias, int64_t N, int64_t C, int64_t spatial, int64_t groups,
                         float eps);
}  // namespace cuda

}  // namespace mentor
