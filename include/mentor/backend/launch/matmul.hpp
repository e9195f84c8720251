#pragma once
// The CUDA launchers of ops/matmul.hpp: plain C++ declarations (no CUDA header, no tensor, no
// autograd), defined for float and bf16 in src/cuda/gemm.cu.
#include <cstdint>

namespace mentor {

namespace cuda {
// C_i = alpha * op(A_i) op(B_i) + beta * C_i for i < batch, row-major (the cblas RowMajor
// convention, as mentor::cpu::gemm_batched): matrix i of A starts at a + i * stride_a (stride 0:
// one matrix shared by every i), likewise B and C; lda/ldb/ldc are the row pitches of the stored
// matrices (A is stored k x m when trans_a, B n x k when trans_b). beta == 0 overwrites C. bf16
// accumulates in float (cublasGemmStridedBatchedEx with CUBLAS_COMPUTE_32F).
template <class T>
void gemm_strided_batched(bool trans_a, bool trans_b, int64_t batch, int64_t m, int64_t n,
                          int64_t k, float alpha, const T* a, int64_t lda, int64_t stride_a,
                          const T* b, int64_t ldb, int64_t stride_b, float beta, T* c, int64_t ldc,
                          int64_t stride_c);
// out[r, c] = bias[c] for r < rows, c < cols (out contiguous): a linear layer's output is
// initialised with its bias, then the product is accumulated with beta = 1.
template <class T>
void broadcast_rows(const T* bias, T* out, int64_t rows, int64_t cols);
// out[c] = sum_r x[r, c] for contiguous x [rows, cols], accumulated in float (the bias gradient).
template <class T>
void column_sums(const T* x, T* out, int64_t rows, int64_t cols);
}  // namespace cuda

}  // namespace mentor
