#pragma once
// dropout(x, p, gen, training): zeroes each element with probability p and scales the kept ones by
// 1 / (1 − p). The mask is never stored: element i (row-major order of x) is kept iff
// philox_uniform_at(seed, offset, i) >= float(p), with (seed, offset) taken from `gen`
// (gen.reserve(numel)), so the backward regenerates the same mask and CPU and CUDA agree bit for
// bit. Identity (the input itself) when !training or p == 0; all zeros when p == 1.
#include <cstdint>

#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/backend/launch/dropout.hpp"
#include "mentor/core/random.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/ops/apply.hpp"

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

// The kernel on x (forward) and on the gradient (backward): the same mask both times.
struct Dropout {
  static constexpr OpSaves saves = OpSaves::None;
  uint64_t seed, offset;
  float p;
  double scale;

  const char* name() const { return "dropout"; }
  template <class T, class D>
  Shape output_shape(const Tensor<T, D>& x) const {
    return x.shape();
  }
  template <class T>
  void forward_cpu(const Tensor<T, CPU>& x, Tensor<T, CPU>& out) const {
    cpu::dropout_kernel(x.data(), out.data(), out.numel(), seed, offset, p,
                        static_cast<acc_t<T>>(scale));
  }
  template <class T>
  void forward_cuda(const Tensor<T, CUDA>& x, Tensor<T, CUDA>& out) const {
    cuda::dropout_apply(x.data(), out.data(), out.numel(), seed, offset, p,
                        static_cast<float>(scale));
  }
  template <class T>
  void backward_cpu(const Tensor<T, CPU>&, const Tensor<T, CPU>&, const Tensor<T, CPU>& grad_out,
                    Tensor<T, CPU>& grad_x) const {
    forward_cpu(grad_out, grad_x);
  }
  template <class T>
  void backward_cuda(const Tensor<T, CUDA>&, const Tensor<T, CUDA>&,
                     const Tensor<T, CUDA>& grad_out, Tensor<T, CUDA>& grad_x) const {
    forward_cuda(grad_out, grad_x);
  }
};

// p == 1 needs no case of its own: every uniform is below 1, so nothing is kept (scale unused).
template <FloatingElement T, class D>
Tensor<T, D> dropout(const Tensor<T, D>& x, double p, Generator& gen, bool training) {
  MENTOR_CHECK(p >= 0.0 && p <= 1.0, "dropout: probability ", p, " is outside [0, 1] (input ",
               x.shape().str(), ")");
  if (!training || p == 0.0) return x;
  const uint64_t seed = gen.seed;
  const uint64_t offset = gen.reserve(x.numel());
  return apply(Dropout{seed, offset, static_cast<float>(p), 1.0 / (1.0 - p)}, x);
}

}  // namespace mentor
