#pragma once
// The CUDA launchers of ops/embedding.hpp: plain C++ declarations (no CUDA header, no tensor, no
// autograd), defined for float and bf16 in src/cuda/embedding.cu.
#include <cstdint>

namespace mentor {

namespace cuda {
// Index of the first ids[i] outside [0, upper), or -1 when all are valid (waits on the current
// stream; never call it while the stream is captured).
int64_t first_out_of_range(const int64_t* ids, int64_t n, int64_t upper);
// out[i, :] = table[ids[i], :] for i < n; table contiguous [V, C], out contiguous [n, C]; an id
// outside [0, V) (unchecked only under graph capture) gives a zero row.
template <class T>
void embedding_forward(const T* table, int64_t V, int64_t C, const int64_t* ids, int64_t n, T* out);
// grad_table (contiguous [V, C], overwritten) = Σ_i onehot(ids[i]) grad_out[i, :], accumulated in
// float.
template <class T>
void embedding_backward(const T* grad_out, const int64_t* ids, int64_t n, int64_t V, int64_t C,
                        T* grad_table);
}  // namespace cuda

}  // namespace mentor
