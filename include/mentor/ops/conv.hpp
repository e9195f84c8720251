#pragma once
// 2-D convolution (NCHW, square stride and symmetric zero padding), asymmetric zero padding and
// nearest-neighbour 2x upsampling: the spatial ops of the VQ tokenizer's encoder and decoder.
//
// CPU conv2d is im2col + GEMM per image, parallel over the batch. The im2col buffer is built for a
// band of output rows at a time (at most kConvColumnBudget elements), so a 3x3 conv at 512 channels
// on a 256x256 map never materialises the full [C*9, H*W] patch matrix. A 1x1 stride-1 unpadded
// conv skips im2col: the image itself is the patch matrix. bf16 runs in float (converted once).
// Backward: dW = sum_n dY_n col_n^T, dX_n = col2im(W^T dY_n), dB = sum over batch and pixels.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <tuple>
#include <utility>
#include <vector>

#include "mentor/backend/cpu/gemm.hpp"
#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/backend/launch/conv.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/ops/apply.hpp"

namespace mentor {

namespace cpu {

// Elements of im2col buffer per band of output rows (8 MiB of float): big enough that the GEMM's
// n dimension stays in the hundreds, small enough to stay near the caches.
inline constexpr int64_t kConvColumnBudget = int64_t{1} << 21;

// Output columns ox whose input column ox*stride - padding + kx lies in [0, width): [begin, end).
inline std::pair<int64_t, int64_t> conv_valid_columns(const Conv2dGeometry& g, int64_t kx) {
  const int64_t lead = g.padding - kx;  // need ox * stride >= lead
  const int64_t begin = lead <= 0 ? 0 : (lead + g.stride - 1) / g.stride;
  const int64_t last = g.width - 1 + g.padding - kx;  // need ox * stride <= last
  int64_t end = last < 0 ? 0 : last / g.stride + 1;
  end = std::clamp<int64_t>(end, 0, g.out_width);
  return {std::min(begin, end), end};
}

// col [C*kh*kw, (oy_end - oy_begin) * Wo] from image x_n [C, H, W] for output rows [oy_begin,
// oy_end).
template <class A>
void im2col_rows(const A* x_n, const Conv2dGeometry& g, int64_t oy_begin, int64_t oy_end, A* col) {
  const int64_t cols = (oy_end - oy_begin) * g.out_width;
  // Channels fill disjoint rows of col: split them over threads (serial inside a parallel region).
  const int64_t grain =
      std::max<int64_t>(1, 32768 / std::max<int64_t>(g.kernel_h * g.kernel_w * cols, 1));
  parallel_for(g.in_channels, grain, [&](int64_t c_begin, int64_t c_end) {
    for (int64_t c = c_begin; c < c_end; ++c) {
      for (int64_t ky = 0; ky < g.kernel_h; ++ky) {
        for (int64_t kx = 0; kx < g.kernel_w; ++kx) {
          A* dst = col + ((c * g.kernel_h + ky) * g.kernel_w + kx) * cols;
          auto [ox_begin, ox_end] = conv_valid_columns(g, kx);
          for (int64_t oy = oy_begin; oy < oy_end; ++oy, dst += g.out_width) {
            const int64_t iy = oy * g.stride - g.padding + ky;
            if (iy < 0 || iy >= g.height) {
              std::fill(dst, dst + g.out_width, A(0));
              continue;
            }
            const A* src = x_n + (c * g.height + iy) * g.width - g.padding + kx;
            std::fill(dst, dst + ox_begin, A(0));
            if (g.stride == 1) {
              std::memcpy(dst + ox_begin, src + ox_begin, sizeof(A) * (ox_end - ox_begin));
            } else {
              for (int64_t ox = ox_begin; ox < ox_end; ++ox) dst[ox] = src[ox * g.stride];
            }
            std::fill(dst + ox_end, dst + g.out_width, A(0));
          }
        }
      }
    }
  });
}

// The adjoint of im2col_rows: dx_n [C, H, W] += scatter of col.
template <class A>
void col2im_rows_add(const A* col, const Conv2dGeometry& g, int64_t oy_begin, int64_t oy_end,
                     A* dx_n) {
  const int64_t cols = (oy_end - oy_begin) * g.out_width;
  // Each channel scatters only into its own plane of dx_n: channels can run in parallel.
  const int64_t grain =
      std::max<int64_t>(1, 32768 / std::max<int64_t>(g.kernel_h * g.kernel_w * cols, 1));
  parallel_for(g.in_channels, grain, [&](int64_t c_begin, int64_t c_end) {
    for (int64_t c = c_begin; c < c_end; ++c) {
      for (int64_t ky = 0; ky < g.kernel_h; ++ky) {
        for (int64_t kx = 0; kx < g.kernel_w; ++kx) {
          const A* src = col + ((c * g.kernel_h + ky) * g.kernel_w + kx) * cols;
          auto [ox_begin, ox_end] = conv_valid_columns(g, kx);
          for (int64_t oy = oy_begin; oy < oy_end; ++oy, src += g.out_width) {
            const int64_t iy = oy * g.stride - g.padding + ky;
            if (iy < 0 || iy >= g.height) continue;
            A* dst = dx_n + (c * g.height + iy) * g.width - g.padding + kx;
            for (int64_t ox = ox_begin; ox < ox_end; ++ox) dst[ox * g.stride] += src[ox];
          }
        }
      }
    }
  });
}

// A per-thread im2col buffer of at least `size` elements, kept between calls: a fresh multi-MiB
// allocation per call costs page faults comparable to the im2col itself.
template <class A>
A* conv_scratch(int64_t size) {
  thread_local std::vector<A> buffer;
  if (static_cast<int64_t>(buffer.size()) < size) buffer.resize(static_cast<size_t>(size));
  return buffer.data();
}

// Output rows per im2col band.
inline int64_t conv_band_rows(const Conv2dGeometry& g) {
  if (g.is_pointwise()) return g.out_height;
  const int64_t per_row = std::max<int64_t>(g.patch_size() * g.out_width, 1);
  return std::clamp<int64_t>(kConvColumnBudget / per_row, 1, std::max<int64_t>(g.out_height, 1));
}

// out [N, O, Ho*Wo] = W [O, K] * col_n [K, Ho*Wo] + bias.
template <class A>
void conv2d_forward(const A* x, const A* w, const A* bias, A* out, const Conv2dGeometry& g) {
  const int64_t K = g.patch_size(), P = g.out_pixels(), O = g.out_channels;
  const int64_t band = conv_band_rows(g);
  parallel_for(g.batch, 1, [&](int64_t n_begin, int64_t n_end) {
    A* col = g.is_pointwise() ? nullptr : conv_scratch<A>(K * band * g.out_width);
    for (int64_t n = n_begin; n < n_end; ++n) {
      const A* x_n = x + n * g.in_channels * g.in_pixels();
      A* out_n = out + n * O * P;
      for (int64_t oy = 0; oy < g.out_height; oy += band) {
        const int64_t oy_end = std::min(oy + band, g.out_height),
                      cols = (oy_end - oy) * g.out_width;
        const A* patches = x_n;
        int64_t ld_patches = P;
        if (!g.is_pointwise()) {
          im2col_rows(x_n, g, oy, oy_end, col);
          patches = col;
          ld_patches = cols;
        }
        gemm(false, false, O, cols, K, A(1), w, K, patches, ld_patches, A(0),
             out_n + oy * g.out_width, P);
      }
      if (bias) {
        for (int64_t o = 0; o < O; ++o) {
          A* row = out_n + o * P;
          for (int64_t p = 0; p < P; ++p) row[p] += bias[o];
        }
      }
    }
  });
}

// grad_x [N, C, H, W] (overwritten) = col2im(W^T grad_out_n) per image.
template <class A>
void conv2d_backward_input(const A* grad_out, const A* w, A* grad_x, const Conv2dGeometry& g) {
  const int64_t K = g.patch_size(), P = g.out_pixels(), O = g.out_channels;
  const int64_t band = conv_band_rows(g);
  parallel_for(g.batch, 1, [&](int64_t n_begin, int64_t n_end) {
    A* col = g.is_pointwise() ? nullptr : conv_scratch<A>(K * band * g.out_width);
    for (int64_t n = n_begin; n < n_end; ++n) {
      const A* g_n = grad_out + n * O * P;
      A* dx_n = grad_x + n * g.in_channels * g.in_pixels();
      if (g.is_pointwise()) {
        gemm(true, false, K, P, O, A(1), w, K, g_n, P, A(0), dx_n, P);
        continue;
      }
      std::fill(dx_n, dx_n + g.in_channels * g.in_pixels(), A(0));
      for (int64_t oy = 0; oy < g.out_height; oy += band) {
        const int64_t oy_end = std::min(oy + band, g.out_height),
                      cols = (oy_end - oy) * g.out_width;
        gemm(true, false, K, cols, O, A(1), w, K, g_n + oy * g.out_width, P, A(0), col, cols);
        col2im_rows_add(col, g, oy, oy_end, dx_n);
      }
    }
  });
}

// grad_w [O, K] (overwritten) = sum_n grad_out_n [O, P] col_n^T. Each thread sums its images into
// its own buffer; the buffers are added in batch order, so the result does not depend on timing.
template <class A>
void conv2d_backward_weight(const A* grad_out, const A* x, A* grad_w, const Conv2dGeometry& g) {
  const int64_t K = g.patch_size(), P = g.out_pixels(), O = g.out_channels;
  const int64_t band = conv_band_rows(g);
  std::mutex mutex;
  std::vector<std::pair<int64_t, std::vector<A>>> partials;
  parallel_for(g.batch, 1, [&](int64_t n_begin, int64_t n_end) {
    A* col = g.is_pointwise() ? nullptr : conv_scratch<A>(K * band * g.out_width);
    std::vector<A> sum(static_cast<size_t>(O * K), A(0));
    for (int64_t n = n_begin; n < n_end; ++n) {
      const A* x_n = x + n * g.in_channels * g.in_pixels();
      const A* g_n = grad_out + n * O * P;
      for (int64_t oy = 0; oy < g.out_height; oy += band) {
        const int64_t oy_end = std::min(oy + band, g.out_height),
                      cols = (oy_end - oy) * g.out_width;
        const A* patches = x_n;
        int64_t ld_patches = P;
        if (!g.is_pointwise()) {
          im2col_rows(x_n, g, oy, oy_end, col);
          patches = col;
          ld_patches = cols;
        }
        gemm(false, true, O, K, cols, A(1), g_n + oy * g.out_width, P, patches, ld_patches, A(1),
             sum.data(), K);
      }
    }
    std::lock_guard<std::mutex> lock(mutex);
    partials.emplace_back(n_begin, std::move(sum));
  });
  std::sort(partials.begin(), partials.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::fill(grad_w, grad_w + O * K, A(0));
  for (const auto& [begin, sum] : partials) {
    for (int64_t i = 0; i < O * K; ++i) grad_w[i] += sum[static_cast<size_t>(i)];
  }
}

// grad_b [O] = sum over images and pixels of grad_out.
template <class A>
void conv2d_backward_bias(const A* grad_out, A* grad_b, const Conv2dGeometry& g) {
  const int64_t P = g.out_pixels(), O = g.out_channels;
  parallel_for(O, 16, [&](int64_t o_begin, int64_t o_end) {
    for (int64_t o = o_begin; o < o_end; ++o) {
      A total = 0;
      for (int64_t n = 0; n < g.batch; ++n) {
        const A* row = grad_out + (n * O + o) * P;
        for (int64_t p = 0; p < P; ++p) total += row[p];
      }
      grad_b[o] = total;
    }
  });
}

// out [planes, 2h, 2w] from in [planes, h, w], each value repeated in its 2x2 block.
template <class T>
void upsample_nearest2x_forward(const T* in, T* out, int64_t planes, int64_t height,
                                int64_t width) {
  const int64_t out_width = 2 * width;
  parallel_for(planes * height, 256, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {  // row = plane * height + y
      const T* src = in + row * width;
      T* dst = out + row * 2 * out_width;
      for (int64_t ix = 0; ix < width; ++ix) dst[2 * ix] = dst[2 * ix + 1] = src[ix];
      std::memcpy(dst + out_width, dst, sizeof(T) * out_width);
    }
  });
}

// grad_in [planes, h, w] = the sum of each 2x2 block of grad_out, in acc_t<T>.
template <class T>
void upsample_nearest2x_backward(const T* grad_out, T* grad_in, int64_t planes, int64_t height,
                                 int64_t width) {
  using A = acc_t<T>;
  const int64_t out_width = 2 * width;
  parallel_for(planes * height, 256, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const T* top = grad_out + row * 2 * out_width;
      const T* bottom = top + out_width;
      T* dst = grad_in + row * width;
      for (int64_t ix = 0; ix < width; ++ix) {
        A total =
            (A(top[2 * ix]) + A(top[2 * ix + 1])) + (A(bottom[2 * ix]) + A(bottom[2 * ix + 1]));
        dst[ix] = static_cast<T>(total);
      }
    }
  });
}

}  // namespace cpu

namespace detail {
template <class T, class D>
Conv2dGeometry conv2d_geometry(const Tensor<T, D>& x, const Tensor<T, D>& weight,
                               const Tensor<T, D>& bias, int64_t stride, int64_t padding) {
  MENTOR_CHECK_SHAPE(x.dim() == 4, "conv2d: input must be [N, C, H, W], got ", x.shape().str());
  MENTOR_CHECK_SHAPE(weight.dim() == 4, "conv2d: weight must be [O, C, kh, kw], got ",
                     weight.shape().str());
  MENTOR_CHECK_SHAPE(x.size(1) == weight.size(1), "conv2d: input ", x.shape().str(), " has ",
                     x.size(1), " channels but weight ", weight.shape().str(), " expects ",
                     weight.size(1));
  MENTOR_CHECK(stride >= 1, "conv2d: stride must be at least 1, got ", stride);
  MENTOR_CHECK(padding >= 0, "conv2d: padding must be non-negative, got ", padding);
  if (bias.defined()) {
    MENTOR_CHECK_SHAPE(bias.dim() == 1 && bias.size(0) == weight.size(0), "conv2d: bias ",
                       bias.shape().str(), " does not match weight ", weight.shape().str());
  }
  Conv2dGeometry g;
  g.batch = x.size(0), g.in_channels = x.size(1), g.height = x.size(2), g.width = x.size(3);
  g.out_channels = weight.size(0), g.kernel_h = weight.size(2), g.kernel_w = weight.size(3);
  g.stride = stride, g.padding = padding;
  const int64_t span_h = g.height + 2 * padding - g.kernel_h;
  const int64_t span_w = g.width + 2 * padding - g.kernel_w;
  MENTOR_CHECK_SHAPE(span_h >= 0 && span_w >= 0, "conv2d: kernel of weight ", weight.shape().str(),
                     " is larger than the padded input ", x.shape().str(), " (padding ", padding,
                     ")");
  g.out_height = span_h / stride + 1;
  g.out_width = span_w / stride + 1;
  return g;
}
}  // namespace detail

// ---- the ops ---------------------------------------------------------------------------------

// conv2d with the geometry of its arguments; the CPU kernels above run in acc_t<T>.
struct Conv2d {
  static constexpr OpSaves saves = OpSaves::Inputs;
  int64_t stride, padding;
  Conv2dGeometry geo{};

  const char* name() const { return "conv2d"; }
  template <class T, class D>
  Shape output_shape(const Tensor<T, D>& x, const Tensor<T, D>& weight, const Tensor<T, D>& bias) {
    geo = detail::conv2d_geometry(x, weight, bias, stride, padding);
    return Shape{geo.batch, geo.out_channels, geo.out_height, geo.out_width};
  }
  template <class T>
  void forward_cpu(const Tensor<T, CPU>& x, const Tensor<T, CPU>& weight,
                   const Tensor<T, CPU>& bias, Tensor<T, CPU>& out) const {
    using A = acc_t<T>;
    const Tensor<A, CPU> xa = detail::acc_input(x), wa = detail::acc_input(weight);
    const Tensor<A, CPU> ba = bias.defined() ? detail::acc_input(bias) : Tensor<A, CPU>();
    Tensor<A, CPU> oa = detail::acc_output(out, out.shape());
    cpu::conv2d_forward<A>(xa.data(), wa.data(), ba.defined() ? ba.data() : nullptr, oa.data(),
                           geo);
    detail::store_acc(oa, out);
  }
  template <class T>
  void forward_cuda(const Tensor<T, CUDA>& x, const Tensor<T, CUDA>& weight,
                    const Tensor<T, CUDA>& bias, Tensor<T, CUDA>& out) const {
    cuda::conv2d_forward<T>(x.data(), weight.data(), bias.defined() ? bias.data() : nullptr,
                            out.data(), geo);
  }
  template <class T>
  void backward_cpu(const Tensor<T, CPU>& x, const Tensor<T, CPU>& weight, const Tensor<T, CPU>&,
                    const Tensor<T, CPU>&, const Tensor<T, CPU>& grad_out, Tensor<T, CPU>& grad_x,
                    Tensor<T, CPU>& grad_weight, Tensor<T, CPU>& grad_bias) const {
    using A = acc_t<T>;
    const Tensor<A, CPU> ga = detail::acc_input(grad_out);
    if (grad_x.defined()) {
      const Tensor<A, CPU> wa = detail::acc_input(weight);
      Tensor<A, CPU> gxa = detail::acc_output(grad_x, x.shape());
      cpu::conv2d_backward_input<A>(ga.data(), wa.data(), gxa.data(), geo);
      detail::store_acc(gxa, grad_x);
    }
    if (grad_weight.defined()) {
      const Tensor<A, CPU> xa = detail::acc_input(x);
      Tensor<A, CPU> gwa = detail::acc_output(grad_weight, weight.shape());
      cpu::conv2d_backward_weight<A>(ga.data(), xa.data(), gwa.data(), geo);
      detail::store_acc(gwa, grad_weight);
    }
    if (grad_bias.defined()) {
      Tensor<A, CPU> gba = detail::acc_output(grad_bias, Shape{geo.out_channels});
      cpu::conv2d_backward_bias<A>(ga.data(), gba.data(), geo);
      detail::store_acc(gba, grad_bias);
    }
  }
  template <class T>
  void backward_cuda(const Tensor<T, CUDA>& x, const Tensor<T, CUDA>& weight,
                     const Tensor<T, CUDA>&, const Tensor<T, CUDA>&,
                     const Tensor<T, CUDA>& grad_out, Tensor<T, CUDA>& grad_x,
                     Tensor<T, CUDA>& grad_weight, Tensor<T, CUDA>& grad_bias) const {
    if (grad_x.defined())
      cuda::conv2d_backward_input<T>(grad_out.data(), weight.data(), grad_x.data(), geo);
    if (grad_weight.defined())
      cuda::conv2d_backward_weight<T>(grad_out.data(), x.data(), grad_weight.data(), geo);
    if (grad_bias.defined()) cuda::conv2d_backward_bias<T>(grad_out.data(), grad_bias.data(), geo);
  }
};

// conv2d(x [N, C, H, W], weight [O, C, kh, kw], bias [O] or undefined) -> [N, O, Ho, Wo] with
// Ho = (H + 2 padding - kh) / stride + 1 (PyTorch's F.conv2d, no dilation, no groups).
template <FloatingElement T, class D>
Tensor<T, D> conv2d(const Tensor<T, D>& x, const Tensor<T, D>& weight, const Tensor<T, D>& bias,
                    int64_t stride = 1, int64_t padding = 0) {
  return apply(Conv2d{stride, padding}, x, weight, bias);
}

// The input copied into the interior of a zeroed output by the device's strided copy (no kernel
// of its own); the backward cuts the interior out of grad_out.
struct Pad2d {
  static constexpr OpSaves saves = OpSaves::None;
  static constexpr bool composite_backward = true;
  int64_t left, right, top, bottom;
  int64_t height = 0, width = 0;

  const char* name() const { return "pad2d"; }
  template <class T, class D>
  Shape output_shape(const Tensor<T, D>& x) {
    MENTOR_CHECK_SHAPE(x.dim() >= 2, "pad2d: input must have at least 2 dimensions, got ",
                       x.shape().str());
    MENTOR_CHECK(left >= 0 && right >= 0 && top >= 0 && bottom >= 0,
                 "pad2d: padding must be non-negative, got (left ", left, ", right ", right,
                 ", top ", top, ", bottom ", bottom, ") for input ", x.shape().str());
    height = x.size(-2), width = x.size(-1);
    Shape shape = x.shape();
    shape[shape.rank() - 2] = height + top + bottom;
    shape[shape.rank() - 1] = width + left + right;
    return shape;
  }
  template <class T>
  void forward_cpu(const Tensor<T, CPU>& x, Tensor<T, CPU>& out) const {
    forward(x, out);
  }
  template <class T>
  void forward_cuda(const Tensor<T, CUDA>& x, Tensor<T, CUDA>& out) const {
    forward(x, out);
  }
  template <class T, class D>
  std::tuple<Tensor<T, D>> backward(const Tensor<T, D>&, const Tensor<T, D>&,
                                    const Tensor<T, D>& grad_out,
                                    const std::array<bool, 1>&) const {
    return {grad_out.narrow(-2, top, height).narrow(-1, left, width).contiguous()};
  }

 private:
  template <class T, class D>
  void forward(const Tensor<T, D>& x, Tensor<T, D>& out) const {
    out.zero_();
    Tensor<T, D> interior = out.narrow(-2, top, height).narrow(-1, left, width);
    detail::DeviceOps<D>::copy_strided(x.data(), x.strides(), interior.data(), interior.strides(),
                                       x.shape());
  }
};

// Zero padding of the last two dimensions (F.pad(x, (left, right, top, bottom))), any rank >= 2.
template <FloatingElement T, class D>
Tensor<T, D> pad2d(const Tensor<T, D>& x, int64_t left, int64_t right, int64_t top,
                   int64_t bottom) {
  return apply(Pad2d{left, right, top, bottom}, x);
}

// Nearest-neighbour 2x upsampling of the last two dimensions of a [planes, H, W] view of the input;
// the backward sums each 2x2 block of grad_out.
struct UpsampleNearest2x {
  static constexpr OpSaves saves = OpSaves::None;
  int64_t planes = 0, height = 0, width = 0;

  const char* name() const { return "upsample_nearest2x"; }
  template <class T, class D>
  Shape output_shape(const Tensor<T, D>& x) {
    MENTOR_CHECK_SHAPE(x.dim() >= 2,
                       "upsample_nearest2x: input must have at least 2 dimensions, got ",
                       x.shape().str());
    height = x.size(-2), width = x.size(-1);
    planes = height * width == 0 ? 0 : x.numel() / (height * width);
    Shape shape = x.shape();
    shape[shape.rank() - 2] = 2 * height;
    shape[shape.rank() - 1] = 2 * width;
    return shape;
  }
  template <class T>
  void forward_cpu(const Tensor<T, CPU>& x, Tensor<T, CPU>& out) const {
    cpu::upsample_nearest2x_forward(x.data(), out.data(), planes, height, width);
  }
  template <class T>
  void forward_cuda(const Tensor<T, CUDA>& x, Tensor<T, CUDA>& out) const {
    cuda::upsample_nearest2x_forward<T>(x.data(), out.data(), planes, height, width);
  }
  template <class T>
  void backward_cpu(const Tensor<T, CPU>&, const Tensor<T, CPU>&, const Tensor<T, CPU>& grad_out,
                    Tensor<T, CPU>& grad_x) const {
    cpu::upsample_nearest2x_backward(grad_out.data(), grad_x.data(), planes, height, width);
  }
  template <class T>
  void backward_cuda(const Tensor<T, CUDA>&, const Tensor<T, CUDA>&,
                     const Tensor<T, CUDA>& grad_out, Tensor<T, CUDA>& grad_x) const {
    cuda::upsample_nearest2x_backward<T>(grad_out.data(), grad_x.data(), planes, height, width);
  }
};

// Nearest-neighbour upsampling by 2 of the last two dimensions (F.interpolate(scale_factor=2,
// mode="nearest")): [..., H, W] -> [..., 2H, 2W].
template <FloatingElement T, class D>
Tensor<T, D> upsample_nearest2x(const Tensor<T, D>& x) {
  return apply(UpsampleNearest2x{}, x);
}

}  // namespace mentor
