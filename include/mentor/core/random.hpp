#pragma once
// Philox4x32-10, a counter-based generator: the value at a counter depends only on (seed, counter),
// so CPU and CUDA produce the same stream for a seed, whatever the thread layout.
//
// Stream layout (the same on every device): a fill of n values drawn at generator offset `o`
// (counted in 128-bit Philox blocks) takes value i from word (i % 4) of block (o + i / 4); normals
// pair words (0,1) and (2,3) by Box-Muller, cosine branch for even i, sine branch for odd i. After
// the fill the generator's offset advances by ceil(n / 4).
#include <cmath>
#include <cstdint>

#include "mentor/core/config.hpp"

namespace mentor {

struct PhiloxBlock {
  uint32_t word[4];
};

MENTOR_HD inline PhiloxBlock philox4x32_10(uint64_t seed, uint64_t counter) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32), c2 = 0,
           c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = static_cast<uint64_t>(kMul0) * c0;
    uint64_t p1 = static_cast<uint64_t>(kMul1) * c2;
    uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0, c1 = n1, c2 = n2, c3 = n3;
    k0 += kWeyl0, k1 += kWeyl1;
  }
  return {{c0, c1, c2, c3}};
}

// Uniform in [0, 1) with 24 random bits.
MENTOR_HD inline float philox_uniform_word(uint32_t word) {
  return static_cast<float>(word >> 8) * (1.0f / 16777216.0f);
}

MENTOR_HD inline float philox_uniform_at(uint64_t seed, uint64_t block_offset, int64_t i) {
  PhiloxBlock block = philox4x32_10(seed, block_offset + static_cast<uint64_t>(i) / 4);
  return philox_uniform_word(block.word[i % 4]);
}

MENTOR_HD inline float philox_normal_at(uint64_t seed, uint64_t block_offset, int64_t i) {
  PhiloxBlock block = philox4x32_10(seed, block_offset + static_cast<uint64_t>(i) / 4);
  int pair = (i % 4) / 2;
  // u1 in (0, 1] so the log is finite.
  float u1 = (static_cast<float>(block.word[2 * pair] >> 8) + 1.0f) * (1.0f / 16777216.0f);
  float u2 = philox_uniform_word(block.word[2 * pair + 1]);
  float radius = sqrtf(-2.0f * logf(u1));
  float angle = 6.2831853071795864f * u2;
  return (i % 2 == 0) ? radius * cosf(angle) : radius * sinf(angle);
}

// Host-side generator state: a seed and an offset in Philox blocks. Copyable, serialisable.
struct Generator {
  uint64_t seed = 0;
  uint64_t offset = 0;

  explicit Generator(uint64_t seed_value = 0) : seed(seed_value) {}
  // Reserves the blocks for n values and returns the offset they start at.
  uint64_t reserve(int64_t n) {
    uint64_t start = offset;
    offset += (static_cast<uint64_t>(n) + 3) / 4;
    return start;
  }
};

}  // namespace mentor
