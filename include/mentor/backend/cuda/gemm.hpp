#pragma once
// Matrix products on the GPU through cuBLASLt, as plain C++ declarations (src/cuda/gemm.cu).
//
// Row-major, cblas-like (the same convention as mentor::cpu::gemm):
//   C[m, n] = alpha * op(A) · op(B) + beta * C   (+ bias[n] on every row when bias != nullptr)
// op(A) is m×k: A is stored [m, k] with row stride lda, or [k, m] when trans_a. Likewise op(B) is
// k×n: B is stored [k, n] with row stride ldb, or [n, k] when trans_b. beta == 0 overwrites C
// (NaNs in C are not propagated). T is float, double or bf16; the products accumulate in float
// (bf16 runs on the tensor cores with float accumulation; float uses full-precision FMA unless
// TF32 is allowed, double uses double).
#include <cstdint>

#include "mentor/core/bf16.hpp"

namespace mentor::cuda {

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const T* a,
          int64_t lda, const T* b, int64_t ldb, float beta, T* c, int64_t ldc,
          const T* bias = nullptr);

// `batch` independent products; matrix i of A starts at a + i * stride_a (likewise B and C). A
// stride of 0 shares one matrix across the batch (a rank-2 weight multiplying a batch). Same
// declaration as in ops/matmul.hpp.
template <class T>
void gemm_strided_batched(bool trans_a, bool trans_b, int64_t batch, int64_t m, int64_t n,
                          int64_t k, float alpha, const T* a, int64_t lda, int64_t stride_a,
                          const T* b, int64_t ldb, int64_t stride_b, float beta, T* c, int64_t ldc,
                          int64_t stride_c);

// As gemm_strided_batched with bf16 inputs and a float32 output (tensor cores, float accumulation,
// no rounding of the result to bf16): attention scores, for one.
void gemm_strided_batched_f32out(bool trans_a, bool trans_b, int64_t batch, int64_t m, int64_t n,
                                 int64_t k, float alpha, const bf16* a, int64_t lda,
                                 int64_t stride_a, const bf16* b, int64_t ldb, int64_t stride_b,
                                 float beta, float* c, int64_t ldc, int64_t stride_c);

// out[r, c] = bias[c] for r < rows (out contiguous [rows, cols]); as in ops/matmul.hpp.
template <class T>
void broadcast_rows(const T* bias, T* out, int64_t rows, int64_t cols);
// out[c] = Σ_r x[r, c] for contiguous x [rows, cols], accumulated in float; as in ops/matmul.hpp.
template <class T>
void column_sums(const T* x, T* out, int64_t rows, int64_t cols);

// float32 GEMMs (and cuDNN float convolutions) may use TF32 tensor cores (10-bit mantissa inputs)
// when allowed. Off by default: float results then match the CPU to ~1e-6.
void set_allow_tf32(bool allow);
bool allow_tf32();

}  // namespace mentor::cuda
