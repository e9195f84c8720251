#pragma once
// The CUDA launchers of ops/rope.hpp: plain C++ declarations (no CUDA header, no tensor, no
// autograd), defined for float and bf16 in src/cuda/embedding.cu.
#include <cstdint>

namespace mentor {

namespace cuda {
// x, out contiguous [B, S, H, Dh]; table contiguous [S, Dh/2, 2] (cos, sin) in float. For each
// pair j: out[2j] = x[2j] cos − x[2j+1] sin, out[2j+1] = x[2j+1] cos + x[2j] sin, computed in
// float; inverse = true rotates by −angle (sin negated): the backward pass.
template <class T>
void rope_apply(const T* x, const float* table, T* out, int64_t B, int64_t S, int64_t H, int64_t Dh,
                bool inverse);
}  // namespace cuda

}  // namespace mentor
