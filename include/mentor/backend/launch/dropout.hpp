#pragma once
// The CUDA launchers of ops/dropout.hpp: plain C++ declarations (no CUDA header, no tensor, no
// autograd), defined for float and bf16 in src/cuda/embedding.cu.
#include <cstdint>

namespace mentor {

namespace cuda {
// out[i] = x[i] · scale if philox_uniform_at(seed, block_offset, i) >= p, else 0; i < n, contiguous
// (the comparison in float, exactly as written, so the mask matches the CPU's). The backward calls
// it again on the gradient with the same seed and offset.
template <class T>
void dropout_apply(const T* x, T* out, int64_t n, uint64_t seed, uint64_t block_offset, float p,
                   float scale);
}  // namespace cuda

}  // namespace mentor
