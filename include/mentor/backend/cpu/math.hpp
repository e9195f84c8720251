#pragma once
// Scalar math the CPU kernels share: the one exponential every CPU kernel uses (and its in-place
// array form).
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

namespace mentor::cpu {

// e^x in float that GCC auto-vectorises (no libm call, no branches): Cephes' expf, i.e.
// 2^n · e^r with |r| <= ln2/2 and a degree-5 minimax polynomial for e^r; relative error ~1e-7
// (about 1-2 ulp). Overflows to +inf above ln(FLT_MAX), flushes to 0 below ln(FLT_MIN) (masked
// -inf logits give exactly 0, and no slow denormal arithmetic), and propagates NaN.
inline float exp_vectorizable(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
  constexpr float kMax = 88.72283f;   // ln(FLT_MAX)
  constexpr float kMin = -87.33654f;  // ln(FLT_MIN): below, 0 (no denormal arithmetic)
  // Adding 1.5·2^23 rounds to an integer and leaves it in the low mantissa bits: no floor() or
  // float->int conversion, which GCC would not vectorise under the default -ftrapping-math.
  constexpr float kRound = 12582912.0f;
  float xc = std::min(std::max(x, kMin), kMax);  // NaN passes through both
  float t = xc * kLog2e + kRound;
  float n = t - kRound;  // n = round(x / ln2) in [-126, 128]
  float r = xc - n * kLn2Hi - n * kLn2Lo;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  float er = p * r * r + r + 1.0f;
  // 2^n as 2^h · 2^(n-h), both normal floats for every n in range.
  int32_t ni = static_cast<int32_t>(std::bit_cast<uint32_t>(t) - 0x4B400000u);
  int32_t h = ni >> 1;
  float two_h = std::bit_cast<float>(static_cast<uint32_t>(h + 127) << 23);
  float two_rest = std::bit_cast<float>(static_cast<uint32_t>(ni - h + 127) << 23);
  float y = er * two_h * two_rest;
  y = x > kMax ? std::numeric_limits<float>::infinity() : y;
  return x < kMin ? 0.0f : y;
}
// Double precision keeps libm's exp: the gradient tests run in double.
inline double exp_vectorizable(double x) { return std::exp(x); }

// x[j] = e^(x[j] − shift) for j < n, in place (a softmax row), by the exp above.
template <class A>
void exp_shifted(A* x, int64_t n, A shift) {
  for (int64_t j = 0; j < n; ++j) x[j] = exp_vectorizable(x[j] - shift);
}

}  // namespace mentor::cpu
