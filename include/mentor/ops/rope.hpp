#pragma once
// LlamaGen's 2D rotary position embedding: the (cos, sin) table of precompute_freqs_cis_2d and its
// application to q/k with interleaved pairs (x[2j], x[2j+1]) rotated by angle j (GPT-fast style).
//
// Table layout [prefix_len + grid², head_dim/2, 2]: rows 0..prefix_len-1 are the condition tokens
// (RopePrefix::Zero: cos = sin = 0, upstream LlamaGen, which zeroes their q and k;
// RopePrefix::Identity: cos = 1, sin = 0, MENTOR's fix), then image cell i = (row i / grid,
// col i % grid) in raster order, whose head_dim/2 angles are [row θ_0 .. row θ_{h/2-1}, col θ_0 ..
// col θ_{h/2-1}] with h = head_dim/2 and θ_k = base^(-2k/h). The angles are formed in float
// exactly as upstream (float32 torch ops), cos/sin rounded to float from the exact value.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/backend/launch/rope.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/ops/apply.hpp"

namespace mentor {

enum class RopePrefix { Zero, Identity };

// The (cos, sin) table [prefix_len + grid², head_dim/2, 2] of LlamaGen precompute_freqs_cis_2d
// (see the file comment); head_dim must be a multiple of 4.
template <class D = CPU>
Tensor<float, D> rope_2d_table(int64_t grid, int64_t head_dim, int64_t prefix_len,
                               RopePrefix prefix, double base = 10000) {
  MENTOR_CHECK(grid >= 0 && prefix_len >= 0, "rope_2d_table: negative grid ", grid,
               " or prefix length ", prefix_len);
  MENTOR_CHECK(head_dim > 0 && head_dim % 4 == 0, "rope_2d_table: head_dim ", head_dim,
               " must be a positive multiple of 4 (two rotation pairs per axis frequency)");
  const int64_t half = head_dim / 2, quarter = half / 2;
  // freqs = 1.0 / (base ** (arange(0, half, 2)[:half//2].float() / half)), all in float32.
  std::vector<float> freqs(static_cast<size_t>(quarter));
  for (int64_t k = 0; k < quarter; ++k) {
    const float exponent = static_cast<float>(2 * k) / static_cast<float>(half);
    freqs[static_cast<size_t>(k)] = 1.0f / std::pow(static_cast<float>(base), exponent);
  }
  const int64_t rows = prefix_len + grid * grid;
  std::vector<float> table(static_cast<size_t>(rows * half * 2));
  for (int64_t i = 0; i < prefix_len; ++i) {
    for (int64_t j = 0; j < half; ++j) {
      table[static_cast<size_t>((i * half + j) * 2)] = prefix == RopePrefix::Identity ? 1.0f : 0.0f;
      table[static_cast<size_t>((i * half + j) * 2 + 1)] = 0.0f;
    }
  }
  for (int64_t cell = 0; cell < grid * grid; ++cell) {
    const int64_t row = cell / grid, col = cell % grid;
    float* dst = table.data() + (prefix_len + cell) * half * 2;
    for (int64_t j = 0; j < half; ++j) {
      const int64_t position = j < quarter ? row : col;
      const float angle = static_cast<float>(position) * freqs[static_cast<size_t>(j % quarter)];
      dst[2 * j] = static_cast<float>(std::cos(static_cast<double>(angle)));
      dst[2 * j + 1] = static_cast<float>(std::sin(static_cast<double>(angle)));
    }
  }
  return Tensor<float, CPU>::from_vector(table, Shape{rows, half, 2}).template to<D>();
}

namespace cpu {
// out = x [B, S, H, Dh] rotated pairwise by the table rows [S, Dh/2, 2] (angles negated when
// `inverse`), in acc_t<T>.
template <class T>
void rope_rotate(const T* x, const float* table, T* out, int64_t B, int64_t S, int64_t H,
                 int64_t Dh, bool inverse) {
  using A = acc_t<T>;
  const int64_t half = Dh / 2;
  const A sign = inverse ? A(-1) : A(1);
  parallel_for(B * S, std::max<int64_t>(1, 16384 / std::max<int64_t>(H * Dh, 1)),
               [&](int64_t begin, int64_t end) {
                 for (int64_t bs = begin; bs < end; ++bs) {
                   const float* rot = table + (bs % S) * half * 2;
                   for (int64_t h = 0; h < H; ++h) {
                     const T* xr = x + (bs * H + h) * Dh;
                     T* orow = out + (bs * H + h) * Dh;
                     for (int64_t j = 0; j < half; ++j) {
                       const A c = static_cast<A>(rot[2 * j]);
                       const A s = sign * static_cast<A>(rot[2 * j + 1]);
                       const A x0 = static_cast<A>(xr[2 * j]), x1 = static_cast<A>(xr[2 * j + 1]);
                       orow[2 * j] = static_cast<T>(x0 * c - x1 * s);
                       orow[2 * j + 1] = static_cast<T>(x1 * c + x0 * s);
                     }
                   }
                 }
               });
}
}  // namespace cpu

// x [B, S, H, Dh] rotated by a (cos, sin) table [S, Dh/2, 2]; the backward rotates the gradient
// by the opposite angles (a rotation's transpose). The table is a constant input.
struct Rope {
  static constexpr OpSaves saves = OpSaves::Inputs;
  static constexpr std::array<bool, 2> saved_inputs{false, true};  // the table

  const char* name() const { return "apply_rope"; }
  template <class T, class D>
  Shape output_shape(const Tensor<T, D>& x, const Tensor<float, D>& table) const {
    MENTOR_CHECK_SHAPE(x.dim() == 4 && x.size(3) % 2 == 0,
                       "apply_rope: input must be [B, S, H, Dh] with even Dh, got ",
                       x.shape().str());
    MENTOR_CHECK_SHAPE(table.dim() == 3 && table.size(0) == x.size(1) &&
                           table.size(1) * 2 == x.size(3) && table.size(2) == 2,
                       "apply_rope: table of shape ", table.shape().str(), " does not fit input ",
                       x.shape().str(), " (expected [", x.size(1), ", ", x.size(3) / 2, ", 2])");
    return x.shape();
  }
  template <class T>
  void forward_cpu(const Tensor<T, CPU>& x, const Tensor<float, CPU>& table,
                   Tensor<T, CPU>& out) const {
    rotate_cpu(x, table, out, false);
  }
  template <class T>
  void forward_cuda(const Tensor<T, CUDA>& x, const Tensor<float, CUDA>& table,
                    Tensor<T, CUDA>& out) const {
    rotate_cuda(x, table, out, false);
  }
  template <class T>
  void backward_cpu(const Tensor<T, CPU>&, const Tensor<float, CPU>& table, const Tensor<T, CPU>&,
                    const Tensor<T, CPU>& grad_out, Tensor<T, CPU>& grad_x,
                    Tensor<float, CPU>&) const {
    rotate_cpu(grad_out, table, grad_x, true);
  }
  template <class T>
  void backward_cuda(const Tensor<T, CUDA>&, const Tensor<float, CUDA>& table,
                     const Tensor<T, CUDA>&, const Tensor<T, CUDA>& grad_out,
                     Tensor<T, CUDA>& grad_x, Tensor<float, CUDA>&) const {
    rotate_cuda(grad_out, table, grad_x, true);
  }

 private:
  template <class T>
  static void rotate_cpu(const Tensor<T, CPU>& x, const Tensor<float, CPU>& table,
                         Tensor<T, CPU>& out, bool inverse) {
    cpu::rope_rotate(x.data(), table.data(), out.data(), x.size(0), x.size(1), x.size(2), x.size(3),
                     inverse);
  }
  template <class T>
  static void rotate_cuda(const Tensor<T, CUDA>& x, const Tensor<float, CUDA>& table,
                          Tensor<T, CUDA>& out, bool inverse) {
    cuda::rope_apply(x.data(), table.data(), out.data(), x.size(0), x.size(1), x.size(2), x.size(3),
                     inverse);
  }
};

// Rotates x [B, S, H, Dh] by the table rows [S, Dh/2, 2] (the caller narrows the full table to the
// S positions it feeds, e.g. table.narrow(0, start_pos, S) when decoding with a KV cache).
// Computed in float (double for double tensors); differentiable in x (the table is a constant).
template <FloatingElement T, class D>
Tensor<T, D> apply_rope(const Tensor<T, D>& x, const Tensor<float, D>& table) {
  return apply(Rope{}, x, table.detach());
}

}  // namespace mentor
