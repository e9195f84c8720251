#pragma once
// CPU GEMM: C = alpha * op(A) * op(B) + beta * C on raw row-major buffers (the cblas CblasRowMajor
// convention).
//
// Threading is done here: the rows (or columns) of C are cut into one contiguous slab per thread
// and each thread runs one single-threaded kernel on its slab, so the slabs never wait on each
// other and mentor's one thread pool (OpenMP, parallel.hpp) is the only one. The kernel is
// OpenBLAS's OpenMP build when the build found it (MENTOR_WITH_OPENBLAS: packed micro-kernels
// chosen at run time for the CPU, AVX-512 or AVX2; inside a parallel region it runs on the calling
// thread, and outside one it follows mentor's thread count, as both share the OpenMP runtime), else
// Eigen's blocked GEMM, the portable fallback. bench/bench_matmul.cpp measures the result against
// OpenBLAS's own threaded cblas_sgemm; docs/performance.md has the figures.

// GCC 12 reports a false -Wmaybe-uninitialized (-Wuninitialized at -O1 with sanitizers) inside its
// own AVX-512 intrinsics (`__m512 __Y = __Y;` in _mm512_undefined_ps) when Eigen's product kernels
// inline them. GCC decides from the pragma state at Eigen's template definitions, so both are
// silenced around the include. This only helps when this is the first inclusion of Eigen in the
// translation unit; otherwise the build needs -Wno-maybe-uninitialized -Wno-uninitialized.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <Eigen/Core>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <type_traits>

#if defined(MENTOR_WITH_OPENBLAS) && MENTOR_WITH_OPENBLAS
#include <cblas.h>
#endif

#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/core/error.hpp"

namespace mentor::cpu {

namespace detail {

template <class T>
using RowMajorMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using ConstRowMajorMap =
    Eigen::Map<const RowMajorMatrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using RowMajorMap = Eigen::Map<RowMajorMatrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

// Multiply-adds a thread must get before a parallel split pays for waking it. Equal to Eigen's own
// kMinTaskSize, so gemm starts threads at the same product size Eigen's OpenMP GEMM would (and
// below it, Eigen's internal heuristic stays serial too).
inline constexpr double kMinMultiplyAddsPerThread = 50000.0;
// Slabs are cut at multiples of this many rows/columns so each is a whole number of register tiles.
inline constexpr int64_t kSlabAlignment = 16;

// C = beta * C, where beta == 0 overwrites (C may hold NaN or garbage then, as in BLAS).
template <class T>
void scale_matrix(int64_t m, int64_t n, T beta, T* c, int64_t ldc) {
  if (beta == T(1)) return;
  RowMajorMap<T> c_map(c, m, n, Eigen::OuterStride<>(ldc));
  if (beta == T(0)) {
    c_map.setZero();
  } else {
    c_map *= beta;
  }
}

// One single-threaded call of Eigen's GEMM; m, n, k > 0 and alpha != 0 (gemm_serial checks).
template <class T>
void gemm_eigen(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
                int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  RowMajorMap<T> c_map(c, m, n, Eigen::OuterStride<>(ldc));
  const ConstRowMajorMap<T> a_map(a, trans_a ? k : m, trans_a ? m : k, Eigen::OuterStride<>(lda));
  const ConstRowMajorMap<T> b_map(b, trans_b ? n : k, trans_b ? k : n, Eigen::OuterStride<>(ldb));
  // alpha is folded into the lhs expression, which Eigen's blas_traits peel off into the kernel's
  // alpha argument, and .transpose() of a row-major map is read as column-major without a copy.
  const auto multiply = [&](const auto& op_a, const auto& op_b) {
    if (beta == T(0)) {
      // Eigen zeroes the destination before accumulating, so NaN in C never leaks through.
      c_map.noalias() = (alpha * op_a) * op_b;
    } else {
      if (beta != T(1)) c_map *= beta;
      c_map.noalias() += (alpha * op_a) * op_b;
    }
  };
  if (!trans_a && !trans_b) {
    multiply(a_map, b_map);
  } else if (!trans_a && trans_b) {
    multiply(a_map, b_map.transpose());
  } else if (trans_a && !trans_b) {
    multiply(a_map.transpose(), b_map);
  } else {
    multiply(a_map.transpose(), b_map.transpose());
  }
}

#if defined(MENTOR_WITH_OPENBLAS) && MENTOR_WITH_OPENBLAS
// OpenBLAS takes 32-bit sizes; larger ones go to Eigen.
inline bool fits_blas_int(int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb, int64_t ldc) {
  constexpr int64_t limit = std::numeric_limits<blasint>::max();
  return m <= limit && n <= limit && k <= limit && lda <= limit && ldb <= limit && ldc <= limit;
}
#endif

// One single-threaded GEMM (callers split the work; see gemm_dispatch): OpenBLAS's kernel when
// linked, else Eigen's.
template <class T>
void gemm_serial(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
                 int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0 || alpha == T(0)) {
    // BLAS semantics: op(A) * op(B) is not computed, so A and B are not read.
    scale_matrix(m, n, beta, c, ldc);
    return;
  }
#if defined(MENTOR_WITH_OPENBLAS) && MENTOR_WITH_OPENBLAS
  if (fits_blas_int(m, n, k, lda, ldb, ldc)) {
    const auto op = [](bool t) { return t ? CblasTrans : CblasNoTrans; };
    const auto i = [](int64_t v) { return static_cast<blasint>(v); };
    // beta == 0 makes OpenBLAS store zeros before accumulating: NaN in C never leaks through.
    if constexpr (std::is_same_v<T, float>) {
      cblas_sgemm(CblasRowMajor, op(trans_a), op(trans_b), i(m), i(n), i(k), alpha, a, i(lda), b,
                  i(ldb), beta, c, i(ldc));
    } else {
      cblas_dgemm(CblasRowMajor, op(trans_a), op(trans_b), i(m), i(n), i(k), alpha, a, i(lda), b,
                  i(ldb), beta, c, i(ldc));
    }
    return;
  }
#endif
  gemm_eigen(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// Splits C into per-thread slabs (rows when m >= n, else columns) and runs gemm_serial on each.
// Arguments are already validated.
template <class T>
void gemm_dispatch(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
                   int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  const double multiply_adds =
      static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  const int threads = num_threads();
  const bool split_rows = m >= n;
  const int64_t split_extent = split_rows ? m : n;
  const int64_t slabs = (split_extent + kSlabAlignment - 1) / kSlabAlignment;
  if (threads <= 1 || k == 0 || alpha == T(0) || slabs < 2 || in_parallel_region() ||
      multiply_adds < 2.0 * kMinMultiplyAddsPerThread) {
    gemm_serial(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  // Work of one aligned slab; the grain keeps every thread's share above kMinMultiplyAddsPerThread.
  const double slab_multiply_adds = multiply_adds / static_cast<double>(slabs);
  const auto grain = static_cast<int64_t>(kMinMultiplyAddsPerThread / slab_multiply_adds) + 1;
  parallel_for(slabs, grain, [&](int64_t slab_begin, int64_t slab_end) {
    const int64_t begin = slab_begin * kSlabAlignment;
    const int64_t end = std::min(split_extent, slab_end * kSlabAlignment);
    if (split_rows) {
      // Rows [begin, end) of C need rows [begin, end) of op(A): stored rows of A, or columns of
      // A^T.
      const T* a_slab = trans_a ? a + begin : a + begin * lda;
      gemm_serial(trans_a, trans_b, end - begin, n, k, alpha, a_slab, lda, b, ldb, beta,
                  c + begin * ldc, ldc);
    } else {
      // Columns [begin, end) of C need columns [begin, end) of op(B).
      const T* b_slab = trans_b ? b + begin * ldb : b + begin;
      gemm_serial(trans_a, trans_b, m, end - begin, k, alpha, a, lda, b_slab, ldb, beta, c + begin,
                  ldc);
    }
  });
}

// Throws mentor::Error naming the bad argument. Leading dimensions are only checked for matrices
// that hold elements, so m, n or k of 0 accept any ld (and null pointers).
inline void check_gemm_args(const char* op, bool trans_a, bool trans_b, int64_t m, int64_t n,
                            int64_t k, const void* a, int64_t lda, const void* b, int64_t ldb,
                            const void* c, int64_t ldc) {
  MENTOR_CHECK(m >= 0 && n >= 0 && k >= 0, op, ": negative size m=", m, " n=", n, " k=", k);
  const int64_t a_cols = trans_a ? m : k;  // stored A is (trans_a ? k x m : m x k), row-major
  const int64_t b_cols = trans_b ? k : n;  // stored B is (trans_b ? n x k : k x n), row-major
  if (m > 0 && k > 0) {
    MENTOR_CHECK(a != nullptr, op, ": A is null for a ", m, "x", k, " op(A)");
    MENTOR_CHECK(lda >= a_cols, op, ": lda=", lda, " is smaller than the ", a_cols,
                 " columns of stored A (trans_a=", trans_a, ", m=", m, ", k=", k, ")");
  }
  if (k > 0 && n > 0) {
    MENTOR_CHECK(b != nullptr, op, ": B is null for a ", k, "x", n, " op(B)");
    MENTOR_CHECK(ldb >= b_cols, op, ": ldb=", ldb, " is smaller than the ", b_cols,
                 " columns of stored B (trans_b=", trans_b, ", k=", k, ", n=", n, ")");
  }
  if (m > 0 && n > 0) {
    MENTOR_CHECK(c != nullptr, op, ": C is null for a ", m, "x", n, " result");
    MENTOR_CHECK(ldc >= n, op, ": ldc=", ldc, " is smaller than the ", n, " columns of C");
  }
}

}  // namespace detail

// C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C, row-major with leading dimensions
// lda/ldb/ldc (elements between consecutive rows of the stored matrix); op(X) = X^T when trans_x,
// in which case the stored A is k x m (B is n x k). When beta == 0, C is write-only (may hold NaN);
// when k == 0 or alpha == 0, A and B are not read. Uses num_threads() threads for large products.
template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
          int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "mentor::cpu::gemm supports float and double");
  detail::check_gemm_args("gemm", trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc);
  detail::gemm_dispatch(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// `batch` independent gemm calls; matrix i of A starts at a + i * stride_a (likewise B and C).
// stride_a or stride_b of 0 broadcasts one matrix to every batch entry; C's matrices must not
// overlap. Small matrices are spread over threads whole (one serial GEMM each); when there are
// fewer matrices than threads, each matrix is split across threads instead.
template <class T>
void gemm_batched(bool trans_a, bool trans_b, int64_t batch, int64_t m, int64_t n, int64_t k,
                  T alpha, const T* a, int64_t lda, int64_t stride_a, const T* b, int64_t ldb,
                  int64_t stride_b, T beta, T* c, int64_t ldc, int64_t stride_c) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "mentor::cpu::gemm_batched supports float and double");
  MENTOR_CHECK(batch >= 0, "gemm_batched: negative batch count ", batch);
  detail::check_gemm_args("gemm_batched", trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc);
  if (batch == 0 || m == 0 || n == 0) return;
  const int64_t c_extent = (m - 1) * ldc + n;  // elements one C matrix spans
  MENTOR_CHECK(batch == 1 || std::abs(stride_c) >= c_extent, "gemm_batched: stride_c=", stride_c,
               " makes the ", batch, " output matrices (", m, "x", n, ", ldc=", ldc,
               ") overlap; it must be at least ", c_extent, " in magnitude");

  const auto run_one = [&](int64_t i, auto&& matrix_gemm) {
    matrix_gemm(trans_a, trans_b, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b, ldb,
                beta, c + i * stride_c, ldc);
  };
  const int threads = num_threads();
  const double multiply_adds =
      static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  // Whole matrices per thread balance well when the batch divides evenly or is long compared with
  // the thread count, or when a matrix is too small to split profitably anyway.
  const bool split_over_batch = threads > 1 && batch >= threads &&
                                (batch % threads == 0 || batch >= 8 * threads ||
                                 multiply_adds < 8.0 * threads * detail::kMinMultiplyAddsPerThread);
  if (!split_over_batch) {
    for (int64_t i = 0; i < batch; ++i) run_one(i, detail::gemm_dispatch<T>);
    return;
  }
  const auto grain =
      static_cast<int64_t>(detail::kMinMultiplyAddsPerThread / std::max(multiply_adds, 1.0)) + 1;
  parallel_for(batch, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) run_one(i, detail::gemm_serial<T>);
  });
}

}  // namespace mentor::cpu
