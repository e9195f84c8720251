// mentor::cpu::gemm / gemm_batched against a naive double-precision triple loop: every transpose
// combination, odd sizes that leave partial register tiles and uneven thread slabs, padded leading
// dimensions (whose padding must stay untouched), alpha/beta variants, beta = 0 over NaN, and
// batches with broadcast (stride 0) operands. Each case runs with 1 and 2 threads.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <tuple>
#include <vector>

#include "catch.hpp"
#include "mentor/backend/cpu/gemm.hpp"
#include "mentor/backend/cpu/parallel.hpp"

namespace test_gemm {

namespace {

using mentor::cpu::gemm;
using mentor::cpu::gemm_batched;

// Restores the thread count a test changed, so test order does not matter.
class ThreadCountGuard {
 public:
  ThreadCountGuard() : saved_(mentor::cpu::num_threads()) {}
  ~ThreadCountGuard() { mentor::cpu::set_num_threads(saved_); }
  ThreadCountGuard(const ThreadCountGuard&) = delete;
  ThreadCountGuard& operator=(const ThreadCountGuard&) = delete;

 private:
  int saved_;
};

template <class T>
std::vector<T> random_values(std::size_t count, std::mt19937& rng) {
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  std::vector<T> values(count);
  for (auto& v : values) v = static_cast<T>(dist(rng));
  return values;
}

// A stored row-major matrix of `rows` x `cols` with leading dimension ld >= cols.
template <class T>
struct StoredMatrix {
  int64_t rows = 0, cols = 0, ld = 0;
  std::vector<T> data;
  T at(int64_t r, int64_t c) const { return data[static_cast<std::size_t>(r * ld + c)]; }
};

template <class T>
StoredMatrix<T> random_matrix(int64_t rows, int64_t cols, int64_t pad, std::mt19937& rng) {
  StoredMatrix<T> m{rows, cols, cols + pad, {}};
  m.data = random_values<T>(static_cast<std::size_t>(std::max<int64_t>(rows * m.ld, 1)), rng);
  return m;
}

// Reference: alpha * op(A) op(B) + beta * C0 in double, plus a per-element error scale
// (|alpha| * sum |a||b| + |beta c|) for a rounding tolerance that grows with k.
struct Reference {
  std::vector<double> value, scale;
  int64_t depth = 0;  // k
};

template <class T>
Reference reference_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
                         const StoredMatrix<T>& a, const StoredMatrix<T>& b, double beta,
                         const StoredMatrix<T>& c0) {
  Reference ref{std::vector<double>(static_cast<std::size_t>(m * n)),
                std::vector<double>(static_cast<std::size_t>(m * n)), k};
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0.0, abs_sum = 0.0;
      for (int64_t p = 0; p < k; ++p) {
        const double a_ip = trans_a ? a.at(p, i) : a.at(i, p);
        const double b_pj = trans_b ? b.at(j, p) : b.at(p, j);
        sum += a_ip * b_pj;
        abs_sum += std::abs(a_ip * b_pj);
      }
      const double c_ij = beta == 0.0 ? 0.0 : beta * static_cast<double>(c0.at(i, j));
      ref.value[static_cast<std::size_t>(i * n + j)] = alpha * sum + c_ij;
      ref.scale[static_cast<std::size_t>(i * n + j)] = std::abs(alpha) * abs_sum + std::abs(c_ij);
    }
  }
  return ref;
}

// The classic dot-product bound: k + 3 roundings (k products and sums, alpha, beta, the final
// add), each relative to the summed magnitudes in `scale`.
template <class T>
double tolerance(const Reference& ref, std::size_t idx) {
  return static_cast<double>(std::numeric_limits<T>::epsilon()) *
         static_cast<double>(ref.depth + 3) * ref.scale[idx];
}

// True when C matches the reference within tolerance and its padding is untouched; no Catch
// macros, so threads may call it.
template <class T>
bool matches(const StoredMatrix<T>& c, const StoredMatrix<T>& before, const Reference& ref) {
  for (int64_t i = 0; i < c.rows; ++i)
    for (int64_t j = 0; j < c.ld; ++j) {
      const double got = c.at(i, j);
      if (j >= c.cols) {
        if (got != static_cast<double>(before.at(i, j))) return false;
        continue;
      }
      const auto idx = static_cast<std::size_t>(i * c.cols + j);
      if (!(std::abs(got - ref.value[idx]) <= tolerance<T>(ref, idx))) return false;
    }
  return true;
}

// Checks C (m x n inside its padded storage) against the reference, and that the padding columns
// still hold what `before` held there.
template <class T>
void require_matches(const StoredMatrix<T>& c, const StoredMatrix<T>& before,
                     const Reference& ref) {
  int64_t bad = 0;
  for (int64_t i = 0; i < c.rows; ++i) {
    for (int64_t j = 0; j < c.ld; ++j) {
      const double got = c.at(i, j);
      if (j >= c.cols) {
        if (got != static_cast<double>(before.at(i, j)) && bad++ < 5) {
          FAIL_CHECK("padding of C changed at row " << i << " col " << j);
        }
        continue;
      }
      const auto idx = static_cast<std::size_t>(i * c.cols + j);
      const double tol = tolerance<T>(ref, idx);
      if (!(std::abs(got - ref.value[idx]) <= tol) && bad++ < 5) {
        FAIL_CHECK("C(" << i << "," << j << ") = " << got << ", expected " << ref.value[idx]
                        << " (tol " << tol << ")");
      }
    }
  }
  REQUIRE(bad == 0);
}

template <class T>
void check_gemm_case(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, T beta,
                     int64_t pad, bool nan_c, std::mt19937& rng) {
  CAPTURE(trans_a, trans_b, m, n, k, alpha, beta, pad, nan_c);
  const auto a = trans_a ? random_matrix<T>(k, m, pad, rng) : random_matrix<T>(m, k, pad, rng);
  const auto b = trans_b ? random_matrix<T>(n, k, pad, rng) : random_matrix<T>(k, n, pad, rng);
  auto c = random_matrix<T>(m, n, pad, rng);
  if (nan_c) {
    // Only the logical m x n part is NaN; the padding keeps random values to check it is kept.
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j)
        c.data[static_cast<std::size_t>(i * c.ld + j)] = std::numeric_limits<T>::quiet_NaN();
  }
  const auto before = c;
  const auto ref = reference_gemm(trans_a, trans_b, m, n, k, static_cast<double>(alpha), a, b,
                                  static_cast<double>(beta), before);
  gemm<T>(trans_a, trans_b, m, n, k, alpha, a.data.data(), a.ld, b.data.data(), b.ld, beta,
          c.data.data(), c.ld);
  require_matches(c, before, ref);
}

// (m, n, k): ones, primes, partial 16-wide tiles, m > n (row slabs) and n > m (column slabs),
// and sizes large enough that gemm splits the work across threads.
const std::vector<std::tuple<int64_t, int64_t, int64_t>> kShapes = {
    {1, 1, 1},     {1, 1, 17},     {3, 1, 65},    {1, 130, 3},   {17, 3, 1},
    {17, 65, 130}, {65, 17, 33},   {130, 65, 17}, {65, 130, 65}, {130, 1, 130},
    {1, 130, 130}, {200, 144, 97}, {33, 257, 70}};

template <class T>
void check_all_shapes(int64_t pad, T alpha, T beta, bool nan_c) {
  std::mt19937 rng(1234);
  for (const auto& [m, n, k] : kShapes) {
    for (const bool trans_a : {false, true}) {
      for (const bool trans_b : {false, true}) {
        check_gemm_case<T>(trans_a, trans_b, m, n, k, alpha, beta, pad, nan_c, rng);
      }
    }
  }
}

}  // namespace

TEMPLATE_TEST_CASE("gemm matches a double-precision triple loop", "[gemm]", float, double) {
  ThreadCountGuard guard;
  const int threads = GENERATE(1, 2);
  mentor::cpu::set_num_threads(threads);
  CAPTURE(threads);
  SECTION("alpha 1, beta 0, tight leading dimensions") {
    check_all_shapes<TestType>(0, TestType(1), TestType(0), false);
  }
  SECTION("alpha 0.5, beta -1.25, padded leading dimensions") {
    check_all_shapes<TestType>(5, TestType(0.5), TestType(-1.25), false);
  }
  SECTION("alpha -2, beta 1 accumulates into C") {
    check_all_shapes<TestType>(3, TestType(-2), TestType(1), false);
  }
  SECTION("beta 0 never reads C, even when it holds NaN") {
    check_all_shapes<TestType>(2, TestType(1.5), TestType(0), true);
  }
}

TEST_CASE("gemm with k == 0 or alpha == 0 only scales C and never reads A or B", "[gemm]") {
  std::mt19937 rng(7);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> nan_a(64 * 64, nan), nan_b(64 * 64, nan);
  for (const float beta : {0.0f, 1.0f, -0.5f}) {
    CAPTURE(beta);
    auto c = random_matrix<float>(40, 30, 2, rng);
    const auto before = c;
    // k == 0: the product is an empty sum, so C = beta * C (a null A/B must be accepted).
    gemm<float>(false, false, 40, 30, 0, 1.0f, nullptr, 0, nullptr, 30, beta, c.data.data(), c.ld);
    for (int64_t i = 0; i < 40; ++i)
      for (int64_t j = 0; j < 32; ++j)
        REQUIRE(c.at(i, j) == (j < 30 ? beta * before.at(i, j) : before.at(i, j)));
    // alpha == 0 with NaN operands: BLAS does not read A and B, so no NaN appears.
    c = before;
    gemm<float>(true, false, 40, 30, 64, 0.0f, nan_a.data(), 64, nan_b.data(), 64, beta,
                c.data.data(), c.ld);
    for (int64_t i = 0; i < 40; ++i)
      for (int64_t j = 0; j < 30; ++j) REQUIRE(c.at(i, j) == beta * before.at(i, j));
  }
  SECTION("beta 0 over NaN with k == 0 gives zeros") {
    std::vector<float> c(12, nan);
    gemm<float>(false, true, 3, 4, 0, 1.0f, nullptr, 1, nullptr, 1, 0.0f, c.data(), 4);
    for (const float v : c) REQUIRE(v == 0.0f);
  }
  SECTION("m == 0 or n == 0 touches nothing") {
    std::vector<float> c(4, nan);
    gemm<float>(false, false, 0, 4, 3, 1.0f, nullptr, 3, nan_b.data(), 4, 0.0f, c.data(), 4);
    gemm<float>(false, false, 4, 0, 3, 1.0f, nan_a.data(), 3, nullptr, 1, 0.0f, c.data(), 1);
    for (const float v : c) REQUIRE(std::isnan(v));
  }
}

TEST_CASE("gemm called from inside a parallel region stays correct", "[gemm]") {
  // Nested use (e.g. a caller's own parallel loop) must run serially rather than oversubscribe.
  ThreadCountGuard guard;
  mentor::cpu::set_num_threads(2);
  std::mt19937 rng(99);
  const auto a = random_matrix<float>(96, 80, 0, rng);
  const auto b = random_matrix<float>(80, 112, 0, rng);
  const auto zero = random_matrix<float>(96, 112, 0, rng);
  const auto ref = reference_gemm(false, false, 96, 112, 80, 1.0, a, b, 0.0, zero);
  std::vector<StoredMatrix<float>> outputs(4, zero);
  mentor::cpu::parallel_for(4, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      gemm<float>(false, false, 96, 112, 80, 1.0f, a.data.data(), a.ld, b.data.data(), b.ld, 0.0f,
                  outputs[static_cast<std::size_t>(i)].data.data(), 112);
    }
  });
  for (const auto& c : outputs) require_matches(c, zero, ref);
}

TEST_CASE("concurrent gemm calls on every thread stay correct", "[gemm]") {
  // Each of mentor's threads runs its own single-threaded kernel at once (the slabs of one GEMM,
  // or a caller's parallel loop), so the kernel must be safe to call from every thread at once:
  // Debian's serial OpenBLAS 0.3.21 is not (a few wrong products in every thousand concurrent
  // small NT calls, never with one thread), which this case caught. Random shapes, transposes,
  // padded leading dimensions and alpha/beta, 16 concurrent tasks of 20 calls each per shape.
  ThreadCountGuard guard;
  mentor::cpu::set_num_threads(2);
  std::mt19937 rng(123);
  for (int shape = 0; shape < 200; ++shape) {
    const int64_t m = 1 + rng() % 40, n = 1 + rng() % 70, k = 1 + rng() % 70;
    const bool trans_a = rng() % 2 == 1, trans_b = rng() % 2 == 1;
    const float alpha = rng() % 2 == 1 ? 1.0f : 0.5f, beta = rng() % 2 == 1 ? 0.0f : 1.0f;
    CAPTURE(shape, m, n, k, trans_a, trans_b, alpha, beta);
    const auto a = random_matrix<float>(trans_a ? k : m, trans_a ? m : k, rng() % 3, rng);
    const auto b = random_matrix<float>(trans_b ? n : k, trans_b ? k : n, rng() % 3, rng);
    const auto before = random_matrix<float>(m, n, rng() % 3, rng);
    const auto ref = reference_gemm(trans_a, trans_b, m, n, k, alpha, a, b, beta, before);
    std::vector<int> wrong(16, 0);
    mentor::cpu::parallel_for(16, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task)
        for (int call = 0; call < 20; ++call) {
          StoredMatrix<float> c = before;
          gemm<float>(trans_a, trans_b, m, n, k, alpha, a.data.data(), a.ld, b.data.data(), b.ld,
                      beta, c.data.data(), c.ld);
          // Catch's macros are not thread-safe: count here, check after the loop.
          if (!matches(c, before, ref)) ++wrong[static_cast<std::size_t>(task)];
        }
    });
    int total = 0;
    for (const int w : wrong) total += w;
    REQUIRE(total == 0);
  }
}

TEST_CASE("gemm rejects bad arguments with messages naming them", "[gemm]") {
  std::vector<float> a(100), b(100), c(100);
  REQUIRE_THROWS_AS(
      gemm<float>(false, false, -1, 2, 2, 1.0f, a.data(), 2, b.data(), 2, 0.0f, c.data(), 2),
      mentor::Error);
  REQUIRE_THROWS_WITH(
      gemm<float>(false, false, 4, 5, 6, 1.0f, a.data(), 5, b.data(), 5, 0.0f, c.data(), 5),
      Catch::Contains("lda=5"));
  REQUIRE_THROWS_WITH(
      gemm<float>(false, true, 4, 5, 6, 1.0f, a.data(), 6, b.data(), 5, 0.0f, c.data(), 5),
      Catch::Contains("ldb=5"));
  REQUIRE_THROWS_WITH(
      gemm<float>(false, false, 4, 5, 6, 1.0f, a.data(), 6, b.data(), 5, 0.0f, c.data(), 4),
      Catch::Contains("ldc=4"));
  REQUIRE_THROWS_WITH(gemm_batched<float>(false, false, 3, 4, 5, 6, 1.0f, a.data(), 6, 0, b.data(),
                                          5, 0, 0.0f, c.data(), 5, 10),
                      Catch::Contains("overlap"));
}

TEMPLATE_TEST_CASE("gemm_batched matches per-matrix references", "[gemm]", float, double) {
  ThreadCountGuard guard;
  const int threads = GENERATE(1, 2);
  mentor::cpu::set_num_threads(threads);
  std::mt19937 rng(4321);
  // batch 1 and 3 (fewer / not a multiple of the threads: each matrix is split), 32 attention-head
  // sized matrices (whole matrices per thread), and tiny matrices.
  const std::vector<std::tuple<int64_t, int64_t, int64_t, int64_t>> cases = {
      {1, 65, 33, 17}, {3, 130, 97, 64}, {32, 24, 16, 24}, {7, 1, 3, 1}, {5, 0, 3, 4}};
  for (const auto& [batch, m, n, k] : cases) {
    for (const bool trans_a : {false, true}) {
      for (const bool trans_b : {false, true}) {
        for (const bool broadcast_b : {false, true}) {
          CAPTURE(threads, batch, m, n, k, trans_a, trans_b, broadcast_b);
          const int64_t pad = 1;
          const int64_t a_rows = trans_a ? k : m, a_cols = trans_a ? m : k;
          const int64_t b_rows = trans_b ? n : k, b_cols = trans_b ? k : n;
          // Matrices are laid out with a gap after each one, so strides exceed a matrix's size.
          const int64_t stride_a = a_rows * (a_cols + pad) + 7;
          const int64_t stride_b = broadcast_b ? 0 : b_rows * (b_cols + pad) + 3;
          const int64_t stride_c = m * (n + pad) + 5;
          const auto a_all =
              random_values<TestType>(static_cast<std::size_t>(batch * stride_a + 1), rng);
          const auto b_all = random_values<TestType>(
              static_cast<std::size_t>((broadcast_b ? 1 : batch) * (b_rows * (b_cols + pad) + 3)),
              rng);
          auto c_all = random_values<TestType>(static_cast<std::size_t>(batch * stride_c + 1), rng);
          const auto c_before = c_all;
          const TestType alpha(0.75), beta(-0.5);
          gemm_batched<TestType>(trans_a, trans_b, batch, m, n, k, alpha, a_all.data(),
                                 a_cols + pad, stride_a, b_all.data(), b_cols + pad, stride_b, beta,
                                 c_all.data(), n + pad, stride_c);
          for (int64_t i = 0; i < batch; ++i) {
            const auto slice = [](const std::vector<TestType>& all, int64_t offset, int64_t rows,
                                  int64_t cols, int64_t ld) {
              StoredMatrix<TestType> s{rows, cols, ld, {}};
              s.data.assign(all.begin() + offset, all.begin() + offset + rows * ld);
              return s;
            };
            const auto a = slice(a_all, i * stride_a, a_rows, a_cols, a_cols + pad);
            const auto b = slice(b_all, i * stride_b, b_rows, b_cols, b_cols + pad);
            const auto c0 = slice(c_before, i * stride_c, m, n, n + pad);
            const auto c = slice(c_all, i * stride_c, m, n, n + pad);
            const auto ref = reference_gemm(trans_a, trans_b, m, n, k, 0.75, a, b, -0.5, c0);
            require_matches(c, c0, ref);
          }
          // The gaps between C matrices are not written.
          for (int64_t i = 0; i < batch; ++i) {
            for (int64_t g = m * (n + pad); g < stride_c; ++g) {
              const auto idx = static_cast<std::size_t>(i * stride_c + g);
              REQUIRE(c_all[idx] == c_before[idx]);
            }
          }
        }
      }
    }
  }
}

}  // namespace test_gemm
