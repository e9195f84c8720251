#pragma once
// bfloat16 as a plain 16-bit value type usable in host and device code. Arithmetic converts to float
// (mentor's precision rule: bf16 storage, float accumulation). Conversion from float rounds to
// nearest even; NaN stays NaN.
#include <cstdint>
#include <cstring>
#include <ostream>

#include "mentor/core/config.hpp"

namespace mentor {

struct bf16 {
  uint16_t bits = 0;

  bf16() = default;
  MENTOR_HD explicit bf16(float value) : bits(round_from_float(value)) {}
  MENTOR_HD explicit bf16(double value) : bf16(static_cast<float>(value)) {}
  MENTOR_HD static bf16 from_bits(uint16_t raw) {
    bf16 out;
    out.bits = raw;
    return out;
  }
  MENTOR_HD operator float() const {  // NOLINT: implicit widening is lossless
    uint32_t word = static_cast<uint32_t>(bits) << 16;
    float out;
#if defined(__CUDA_ARCH__)
    out = __uint_as_float(word);
#else
    std::memcpy(&out, &word, sizeof(out));
#endif
    return out;
  }

  MENTOR_HD static uint16_t round_from_float(float value) {
    uint32_t word;
#if defined(__CUDA_ARCH__)
    word = __float_as_uint(value);
#else
    std::memcpy(&word, &value, sizeof(word));
#endif
    if ((word & 0x7f800000u) == 0x7f800000u && (word & 0x007fffffu) != 0) {
      return static_cast<uint16_t>((word >> 16) | 0x0040u);  // quiet NaN, sign kept
    }
    uint32_t rounding_bias = 0x7fffu + ((word >> 16) & 1u);
    return static_cast<uint16_t>((word + rounding_bias) >> 16);
  }

  MENTOR_HD friend bool operator==(bf16 a, bf16 b) { return float(a) == float(b); }
};

inline std::ostream& operator<<(std::ostream& os, bf16 value) { return os << float(value); }

}  // namespace mentor
