#pragma once
// dropout(x, p, gen, training): zeroes each element with probability p and scales the kept ones by
// 1 / (1 − p). The mask is never stored: element i (row-major order of x) is kept iff
// philox_uniform_at(seed, offset, i) >= float(p), with (seed, offset) taken from `gen`
// (gen.reserve(numel)), so the backward regenerates the same mask and CPU and CUDA agree bit for
// bit. Identity (the input itself) when !training or p == 0; all zeros when p == 1.
#include <cstdint>
#include <type_traits>

#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/backend/launch/dropout.hpp"
#include "mentor/core/random.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/ops/dispatch.hpp"

namespace mentor {

namespace cpu {

// out[i] = keep(i) ? x[i] · scale : 0 for i < n, keep(i) = philox_uniform_at(seed, offset, i) >= p.
// One Philox block serves four consecutive elements.
template <class T>
void dropout_kernel(const T* x, T* out, int64_t n, uint64_t seed, uint64_t offset, float p,
                    acc_t<T> scale) {
  using A = acc_t<T>;
  const int64_t blocks = (n + 3) / 4;
  parallel_for(blocks, 1 << 12, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      PhiloxBlock block = philox4x32_10(seed, offset + static_cast<uint64_t>(b));
      for (int64_t j = 0; j < 4 && 4 * b + j < n; ++j) {
        const int64_t i = 4 * b + j;
        const bool keep = philox_uniform_word(block.word[j]) >= p;
        out[i] = static_cast<T>(keep ? static_cast<A>(x[i]) * scale : A(0));
      }
    }
  });
}

}  // namespace cpu

namespace detail {

template <class T, class D>
Tensor<T, D> dropout_apply(const Tensor<T, D>& x, uint64_t seed, uint64_t offset, float p,
                           double scale) {
  Tensor<T, D> src = x.contiguous_nograd();
  Tensor<T, D> out = Tensor<T, D>::empty(x.shape());
  if constexpr (std::is_same_v<D, CPU>) {
    cpu::dropout_kernel(src.data(), out.data(), out.numel(), seed, offset, p,
                        static_cast<acc_t<T>>(scale));
  } else {
    MENTOR_CUDA_CALL(cuda::dropout_apply(src.data(), out.data(), out.numel(), seed, offset, p,
                                         static_cast<float>(scale)));
  }
  return out;
}

}  // namespace detail

template <FloatingElement T, class D>
Tensor<T, D> dropout(const Tensor<T, D>& x, double p, Generator& gen, bool training) {
  MENTOR_CHECK(p >= 0.0 && p <= 1.0, "dropout: probability ", p, " is outside [0, 1] (input ",
               x.shape().str(), ")");
  if (!training || p == 0.0) return x;
  const uint64_t seed = gen.seed;
  const uint64_t offset = gen.reserve(x.numel());
  Tensor<T, D> out;
  if (p == 1.0) {
    out = Tensor<T, D>::zeros(x.shape());
    autograd::record(
        "dropout", out,
        [shape = x.shape()](const Tensor<T, D>&) { return std::tuple{Tensor<T, D>::zeros(shape)}; },
        x);
    return out;
  }
  const float p_float = static_cast<float>(p);
  const double scale = 1.0 / (1.0 - p);
  out = detail::dropout_apply(x, seed, offset, p_float, scale);
  autograd::record(
      "dropout", out,
      [seed, offset, p_float, scale](const Tensor<T, D>& g) {
        return std::tuple{detail::dropout_apply(g, seed, offset, p_float, scale)};
      },
      x);
  return out;
}

}  // namespace mentor
