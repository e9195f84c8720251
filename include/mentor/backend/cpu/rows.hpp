#pragma once
// Row statistics of the CPU kernels, in acc_t<T>: every op that reduces along a contiguous row
// (softmax, losses, norms, l2_normalize, attention) takes them from here.
//
// row_max_sum_exp() reads a row once, block by block (each block stays in L1): the block's maximum,
// then the block's Σ exp(x − m) with the running sum rescaled whenever the maximum grows. Float
// rows use the vectorisable exp of math.hpp. The 16-lane loops vectorise.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "mentor/backend/cpu/math.hpp"
#include "mentor/core/dtype.hpp"

namespace mentor::cpu {

// max of x[0..n) in acc_t<T> over 16 independent lanes (vectorises); NaNs are skipped here (they
// reach the result through the exp sum instead); -inf for n == 0.
template <class T>
acc_t<T> row_max(const T* x, int64_t n) {
  using A = acc_t<T>;
  constexpr int kLanes = 16;
  A lanes[kLanes];
  for (int l = 0; l < kLanes; ++l) lanes[l] = -std::numeric_limits<A>::infinity();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      A v = static_cast<A>(x[i + l]);
      lanes[l] = v > lanes[l] ? v : lanes[l];
    }
  A m = -std::numeric_limits<A>::infinity();
  for (; i < n; ++i) {
    A v = static_cast<A>(x[i]);
    m = v > m ? v : m;
  }
  for (int l = 0; l < kLanes; ++l) m = lanes[l] > m ? lanes[l] : m;
  return m;
}

// Σ exp(x[i] − shift) over 16 lanes.
template <class T>
acc_t<T> row_sum_exp(const T* x, int64_t n, acc_t<T> shift) {
  using A = acc_t<T>;
  constexpr int kLanes = 16;
  A lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) lanes[l] += exp_vectorizable(static_cast<A>(x[i + l]) - shift);
  A s = 0;
  for (int l = 0; l < kLanes; ++l) s += lanes[l];
  for (; i < n; ++i) s += exp_vectorizable(static_cast<A>(x[i]) - shift);
  return s;
}

// Σ x[i] · y[i] over 16 lanes.
template <class T>
acc_t<T> row_dot(const T* x, const T* y, int64_t n) {
  using A = acc_t<T>;
  constexpr int kLanes = 16;
  A lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l)
      lanes[l] += static_cast<A>(x[i + l]) * static_cast<A>(y[i + l]);
  A s = 0;
  for (int l = 0; l < kLanes; ++l) s += lanes[l];
  for (; i < n; ++i) s += static_cast<A>(x[i]) * static_cast<A>(y[i]);
  return s;
}

template <class A>
struct RowMaxSumExp {
  A max;  // m = max of the row (-inf if every entry is -inf)
  A sum;  // Σ exp(x − m); log-sum-exp = m + log(sum)
};

// One pass over the row (see the file comment). A row of -inf gives {-inf, NaN} as torch would.
template <class T>
RowMaxSumExp<acc_t<T>> row_max_sum_exp(const T* x, int64_t n) {
  using A = acc_t<T>;
  constexpr int64_t kBlock = 2048;
  A m = -std::numeric_limits<A>::infinity(), s = 0;
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t len = std::min(kBlock, n - b);
    A block_max = row_max(x + b, len);
    if (block_max > m) {
      s = (s == A(0)) ? A(0) : s * exp_vectorizable(m - block_max);
      m = block_max;
    }
    if (m == -std::numeric_limits<A>::infinity()) continue;  // masked so far: nothing to add
    s += row_sum_exp(x + b, len, m);
  }
  return {m, s};
}

// Σ x[i] in acc_t<T>.
template <class T>
acc_t<T> row_sum(const T* x, int64_t n) {
  acc_t<T> s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<acc_t<T>>(x[i]);
  return s;
}

template <class A>
struct RowMoments {
  A mean;
  A rstd;  // 1 / sqrt(biased variance + eps)
};

// Mean and reciprocal standard deviation of x[0..n), in two passes (mean first): rounding-level
// results in double, as LayerNorm and GroupNorm need.
template <class T>
RowMoments<acc_t<T>> row_moments(const T* x, int64_t n, double eps) {
  using A = acc_t<T>;
  const A mean = row_sum(x, n) / static_cast<A>(n);
  A var = 0;
  for (int64_t i = 0; i < n; ++i) {
    const A d = static_cast<A>(x[i]) - mean;
    var += d * d;
  }
  return {mean, A(1) / std::sqrt(var / static_cast<A>(n) + static_cast<A>(eps))};
}

// 1 / sqrt(mean(x²) + eps) of x[0..n): RMSNorm's scale.
template <class T>
acc_t<T> row_rms_rstd(const T* x, int64_t n, double eps) {
  using A = acc_t<T>;
  A sum_sq = 0;
  for (int64_t i = 0; i < n; ++i) sum_sq += static_cast<A>(x[i]) * static_cast<A>(x[i]);
  return A(1) / std::sqrt(sum_sq / static_cast<A>(n) + static_cast<A>(eps));
}

// Σ x[0..n) accumulated in double whatever T is, over 8 independent lanes (vectorises; the order
// is fixed): long float rows and whole-tensor sums (sum, mean) stay accurate.
template <class T>
double row_sum_double(const T* x, int64_t n) {
  double lanes[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) lanes[l] += static_cast<double>(static_cast<acc_t<T>>(x[i + l]));
  double s = 0;
  for (int l = 0; l < 8; ++l) s += lanes[l];
  for (; i < n; ++i) s += static_cast<double>(static_cast<acc_t<T>>(x[i]));
  return s;
}

}  // namespace mentor::cpu
