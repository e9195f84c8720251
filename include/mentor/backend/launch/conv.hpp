#pragma once
// The CUDA launchers of ops/conv.hpp: plain C++ declarations (no CUDA header, no tensor, no
// autograd), defined for float and bf16 in src/cuda/conv.cu. The types its CPU and CUDA kernels
// share live here too.
#include <cstdint>

namespace mentor {

// Sizes of one conv2d call (shared by the CPU kernels and the CUDA launchers).
struct Conv2dGeometry {
  int64_t batch = 0, in_channels = 0, height = 0, width = 0;
  int64_t out_channels = 0, kernel_h = 0, kernel_w = 0;
  int64_t stride = 1, padding = 0;
  int64_t out_height = 0, out_width = 0;

  int64_t patch_size() const { return in_channels * kernel_h * kernel_w; }  // GEMM k
  int64_t in_pixels() const { return height * width; }
  int64_t out_pixels() const { return out_height * out_width; }
  // 1x1, stride 1, no padding: the image [C, H*W] is already the patch matrix.
  bool is_pointwise() const {
    return kernel_h == 1 && kernel_w == 1 && stride == 1 && padding == 0;
  }
};

namespace cuda {
// All tensors contiguous NCHW; weight [O, C, kh, kw]; T in float and bf16 (bf16 accumulates in
// float). Output size and padding as in Conv2dGeometry (zero padding `padding` on every side).
// out = conv(x, weight) + bias; bias may be null (no bias).
template <class T>
void conv2d_forward(const T* x, const T* weight, const T* bias, T* out, const Conv2dGeometry& geo);
// grad_x = d(sum(out * grad_out)) / dx (overwritten, not accumulated).
template <class T>
void conv2d_backward_input(const T* grad_out, const T* weight, T* grad_x,
                           const Conv2dGeometry& geo);
// grad_weight [O, C, kh, kw] (overwritten).
template <class T>
void conv2d_backward_weight(const T* grad_out, const T* x, T* grad_weight,
                            const Conv2dGeometry& geo);
// grad_bias [O] = sum of grad_out over batch and pixels (overwritten).
template <class T>
void conv2d_backward_bias(const T* grad_out, T* grad_bias, const Conv2dGeometry& geo);
// out [planes, 2h, 2w] with out[p, y, x] = in[p, y / 2, x / 2]; contiguous.
template <class T>
void upsample_nearest2x_forward(const T* in, T* out, int64_t planes, int64_t height, int64_t width);
// grad_in [planes, h, w] = sum of the 2x2 block of grad_out [planes, 2h, 2w] (overwritten).
template <class T>
void upsample_nearest2x_backward(const T* grad_out, T* grad_in, int64_t planes, int64_t height,
                                 int64_t width);
}  // namespace cuda

}  // namespace mentor
