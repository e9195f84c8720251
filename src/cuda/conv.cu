// Launchers of ops/conv.hpp: conv2d forward and backward through cuDNN (NCHW; float with FMA math
// unless TF32 is allowed, bf16 on the tensor cores with float accumulation), bias and its gradient
// and nearest-neighbour 2x upsampling with own kernels. Without cuDNN (MENTOR_WITH_CUDNN=0) the
// three cuDNN launchers throw a clear error; the rest of the file is unchanged.
#include <cuda_runtime.h>
#if MENTOR_WITH_CUDNN
#include <cudnn.h>
#endif

#include <algorithm>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "mentor/backend/cuda/check.hpp"
#include "mentor/backend/cuda/gemm.hpp"
#include "mentor/backend/cuda/kernels/common.cuh"
#include "mentor/backend/cuda/scratch.hpp"
#include "mentor/backend/launch/conv.hpp"
#include "mentor/core/cuda_api.hpp"

namespace mentor {

namespace cuda::kernels {
namespace {

#if MENTOR_WITH_CUDNN
constexpr size_t kMaxWorkspace = size_t{512} << 20;

cudnnHandle_t cudnn_handle() {
  // One per thread, never destroyed: thread-exit order against the CUDA runtime is unknowable.
  thread_local cudnnHandle_t handle = [] {
    cudnnHandle_t h = nullptr;
    MENTOR_CUDNN_CHECK(cudnnCreate(&h));
    return h;
  }();
  MENTOR_CUDNN_CHECK(cudnnSetStream(handle, stream()));
  return handle;
}

template <class T>
constexpr cudnnDataType_t cudnn_type() {
  return std::is_same_v<T, float> ? CUDNN_DATA_FLOAT : CUDNN_DATA_BFLOAT16;
}

int to_int(int64_t v, const char* what) {
  MENTOR_CHECK(v >= 0 && v <= 0x7fffffff, "conv2d (cuDNN): ", what, " = ", v,
               " does not fit cuDNN's 32-bit sizes");
  return static_cast<int>(v);
}

// Descriptors of one convolution, created and destroyed together.
struct ConvDescriptors {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;

  template <class T>
  ConvDescriptors(const Conv2dGeometry& g, T*) {
    const cudnnDataType_t type = cudnn_type<T>();
    MENTOR_CUDNN_CHECK(cudnnCreateTensorDescriptor(&x));
    MENTOR_CUDNN_CHECK(cudnnCreateTensorDescriptor(&y));
    MENTOR_CUDNN_CHECK(cudnnCreateFilterDescriptor(&w));
    MENTOR_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&conv));
    MENTOR_CUDNN_CHECK(cudnnSetTensor4dDescriptor(
        x, CUDNN_TENSOR_NCHW, type, to_int(g.batch, "batch"), to_int(g.in_channels, "in_channels"),
        to_int(g.height, "height"), to_int(g.width, "width")));
    MENTOR_CUDNN_CHECK(cudnnSetTensor4dDescriptor(
        y, CUDNN_TENSOR_NCHW, type, to_int(g.batch, "batch"),
        to_int(g.out_channels, "out_channels"), to_int(g.out_height, "out_height"),
        to_int(g.out_width, "out_width")));
    MENTOR_CUDNN_CHECK(cudnnSetFilter4dDescriptor(
        w, type, CUDNN_TENSOR_NCHW, to_int(g.out_channels, "out_channels"),
        to_int(g.in_channels, "in_channels"), to_int(g.kernel_h, "kernel_h"),
        to_int(g.kernel_w, "kernel_w")));
    const int pad = to_int(g.padding, "padding"), stride = to_int(g.stride, "stride");
    MENTOR_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(conv, pad, pad, stride, stride, 1, 1,
                                                       CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    int n = 0, c = 0, h = 0, wd = 0;
    MENTOR_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(conv, x, w, &n, &c, &h, &wd));
    MENTOR_CHECK(n == g.batch && c == g.out_channels && h == g.out_height && wd == g.out_width,
                 "conv2d (cuDNN): output [", n, ", ", c, ", ", h, ", ", wd,
                 "] differs from the geometry's [", g.batch, ", ", g.out_channels, ", ",
                 g.out_height, ", ", g.out_width, "]");
  }
  ~ConvDescriptors() {
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (x) cudnnDestroyTensorDescriptor(x);
  }
  ConvDescriptors(const ConvDescriptors&) = delete;
  ConvDescriptors& operator=(const ConvDescriptors&) = delete;
};

// Float convolutions keep to the GEMM-based algorithms: FFT and Winograd variants trade ~1e-5
// relative accuracy for speed, beyond what float32 results are checked to.
bool float_safe(cudnnConvolutionFwdAlgo_t a) {
  return a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM ||
         a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM ||
         a == CUDNN_CONVOLUTION_FWD_ALGO_GEMM;
}
bool float_safe(cudnnConvolutionBwdDataAlgo_t a) {
  return a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_0 || a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;
}
bool float_safe(cudnnConvolutionBwdFilterAlgo_t a) {
  return a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 || a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1 ||
         a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3;
}

struct Choice {
  int algo = 0;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  size_t workspace = 0;
};

// Cache key: geometry, element type, pass, TF32 setting.
struct ChoiceKey {
  int64_t values[14];
  bool operator==(const ChoiceKey& o) const {
    return std::memcmp(values, o.values, sizeof(values)) == 0;
  }
};
struct ChoiceKeyHash {
  size_t operator()(const ChoiceKey& k) const {
    uint64_t h = 1469598103934665603ull;
    for (int64_t v : k.values) h = (h ^ static_cast<uint64_t>(v)) * 1099511628211ull;
    return static_cast<size_t>(h);
  }
};

ChoiceKey make_key(const Conv2dGeometry& g, int type, int pass, bool tf32) {
  return ChoiceKey{{g.batch, g.in_channels, g.height, g.width, g.out_channels, g.kernel_h,
                    g.kernel_w, g.stride, g.padding, g.out_height, g.out_width, type, pass,
                    tf32 ? 1 : 0}};
}

std::unordered_map<ChoiceKey, Choice, ChoiceKeyHash>& choice_cache() {
  thread_local std::unordered_map<ChoiceKey, Choice, ChoiceKeyHash> cache;
  return cache;
}

// The first (fastest predicted) algorithm of cuDNN's heuristic list that works, fits the
// workspace limit and, for float, is numerically safe.
template <class Perf>
Choice pick(const Perf* perfs, int count, bool is_float, const char* pass,
            const Conv2dGeometry& g) {
  for (int i = 0; i < count; ++i) {
    if (perfs[i].status != CUDNN_STATUS_SUCCESS || perfs[i].memory > kMaxWorkspace) continue;
    if (is_float && !float_safe(perfs[i].algo)) continue;
    // The heuristic reports CUDNN_DEFAULT_MATH for some float algorithms even when FMA math was
    // asked for, and default math lets cuDNN use TF32 (10-bit mantissa) on Ampere and later; a
    // float convolution is then ~1e-3 off and no 1e-5 check means anything. Without
    // allow_tf32() every float convolution runs with FMA math.
    const cudnnMathType_t math = is_float && !allow_tf32() ? CUDNN_FMA_MATH : perfs[i].mathType;
    return Choice{static_cast<int>(perfs[i].algo), math, perfs[i].memory};
  }
  throw Error(mentor::detail::concat(
      "conv2d (cuDNN): no usable ", pass, " algorithm for x [", g.batch, ", ", g.in_channels, ", ",
      g.height, ", ", g.width, "], weight [", g.out_channels, ", ", g.in_channels, ", ", g.kernel_h,
      ", ", g.kernel_w, "], stride ", g.stride, ", padding ", g.padding));
}

cudnnMathType_t requested_math(bool is_float) {
  if (!is_float) return CUDNN_TENSOR_OP_MATH;
  return allow_tf32() ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
}

#endif  // MENTOR_WITH_CUDNN

template <class T>
__global__ void add_channel_bias_kernel(T* __restrict__ y, const T* __restrict__ bias,
                                        int64_t total, int64_t channels, int64_t pixels) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = (i / pixels) % channels;
    y[i] = from_acc<T>(to_acc(y[i]) + to_acc(bias[c]));
  }
}

// grad_bias[o] = Σ_{n, p} grad_out[n, o, p]: a block per channel, double accumulation.
template <class T>
__global__ void channel_bias_grad_kernel(const T* __restrict__ g, int64_t batch, int64_t channels,
                                         int64_t pixels, T* __restrict__ grad_bias) {
  __shared__ double scratch[32];
  const int64_t o = blockIdx.x;
  double acc = 0.0;
  for (int64_t n = 0; n < batch; ++n) {
    const T* plane = g + (n * channels + o) * pixels;
    for (int64_t p = threadIdx.x; p < pixels; p += blockDim.x) acc += to_acc(plane[p]);
  }
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) grad_bias[o] = from_acc<T>(acc);
}

template <class T>
__global__ void upsample2x_forward_kernel(const T* __restrict__ in, T* __restrict__ out,
                                          int64_t total, int64_t height, int64_t width) {
  const int64_t out_w = 2 * width, out_h = 2 * height;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t x = i % out_w, y = (i / out_w) % out_h, p = i / (out_w * out_h);
    out[i] = in[(p * height + y / 2) * width + x / 2];
  }
}

template <class T>
__global__ void upsample2x_backward_kernel(const T* __restrict__ g, T* __restrict__ grad_in,
                                           int64_t total, int64_t height, int64_t width) {
  const int64_t out_w = 2 * width;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t x = i % width, y = (i / width) % height, p = i / (width * height);
    const T* top = g + (p * 2 * height + 2 * y) * out_w + 2 * x;
    const float s = to_acc(top[0]) + to_acc(top[1]) + to_acc(top[out_w]) + to_acc(top[out_w + 1]);
    grad_in[i] = from_acc<T>(s);
  }
}

}  // namespace
}  // namespace cuda::kernels

#if MENTOR_WITH_CUDNN
template <class T>
void cuda::conv2d_forward(const T* x, const T* weight, const T* bias, T* out,
                          const Conv2dGeometry& geo) {
  namespace k = cuda::kernels;
  if (geo.batch * geo.out_channels * geo.out_height * geo.out_width == 0) return;
  constexpr bool is_float = std::is_same_v<T, float>;
  k::ConvDescriptors d(geo, static_cast<T*>(nullptr));
  cudnnHandle_t handle = k::cudnn_handle();
  const k::ChoiceKey key = k::make_key(geo, is_float ? 0 : 1, 0, cuda::allow_tf32());
  auto it = k::choice_cache().find(key);
  if (it == k::choice_cache().end()) {
    MENTOR_CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, k::requested_math(is_float)));
    cudnnConvolutionFwdAlgoPerf_t perfs[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int returned = 0;
    MENTOR_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(
        handle, d.x, d.w, d.conv, d.y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &returned, perfs));
    it = k::choice_cache().emplace(key, k::pick(perfs, returned, is_float, "forward", geo)).first;
  }
  const k::Choice choice = it->second;
  MENTOR_CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, choice.math));
  size_t workspace_bytes = 0;
  const auto algo = static_cast<cudnnConvolutionFwdAlgo_t>(choice.algo);
  MENTOR_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(handle, d.x, d.w, d.conv, d.y, algo,
                                                             &workspace_bytes));
  cuda::Scratch workspace(workspace_bytes);
  const float alpha = 1.f, beta = 0.f;
  MENTOR_CUDNN_CHECK(cudnnConvolutionForward(handle, &alpha, d.x, x, d.w, weight, d.conv, algo,
                                             workspace.as<void>(), workspace_bytes, &beta, d.y,
                                             out));
  if (bias != nullptr) {
    using DT = cuda::device_t<T>;
    const int64_t pixels = geo.out_height * geo.out_width;
    const int64_t total = geo.batch * geo.out_channels * pixels;
    k::add_channel_bias_kernel<DT><<<cuda::grid_blocks(total, 256), 256, 0, cuda::stream()>>>(
        cuda::device_ptr(out), cuda::device_ptr(bias), total, geo.out_channels, pixels);
    MENTOR_CUDA_CHECK_LAUNCH("add_channel_bias_kernel");
  }
}

template <class T>
void cuda::conv2d_backward_input(const T* grad_out, const T* weight, T* grad_x,
                                 const Conv2dGeometry& geo) {
  namespace k = cuda::kernels;
  const int64_t in_elems = geo.batch * geo.in_channels * geo.height * geo.width;
  if (in_elems == 0) return;
  if (geo.out_channels * geo.out_height * geo.out_width == 0 || geo.kernel_h * geo.kernel_w == 0) {
    MENTOR_CUDA_CHECK(
        cudaMemsetAsync(grad_x, 0, sizeof(T) * static_cast<size_t>(in_elems), cuda::stream()));
    return;
  }
  constexpr bool is_float = std::is_same_v<T, float>;
  k::ConvDescriptors d(geo, static_cast<T*>(nullptr));
  cudnnHandle_t handle = k::cudnn_handle();
  const k::ChoiceKey key = k::make_key(geo, is_float ? 0 : 1, 1, cuda::allow_tf32());
  auto it = k::choice_cache().find(key);
  if (it == k::choice_cache().end()) {
    MENTOR_CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, k::requested_math(is_float)));
    cudnnConvolutionBwdDataAlgoPerf_t perfs[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    int returned = 0;
    MENTOR_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(
        handle, d.w, d.y, d.conv, d.x, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &returned, perfs));
    it = k::choice_cache()
             .emplace(key, k::pick(perfs, returned, is_float, "backward-data", geo))
             .first;
  }
  const k::Choice choice = it->second;
  MENTOR_CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, choice.math));
  const auto algo = static_cast<cudnnConvolutionBwdDataAlgo_t>(choice.algo);
  size_t workspace_bytes = 0;
  MENTOR_CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(handle, d.w, d.y, d.conv, d.x,
                                                                  algo, &workspace_bytes));
  cuda::Scratch workspace(workspace_bytes);
  const float alpha = 1.f, beta = 0.f;
  MENTOR_CUDNN_CHECK(cudnnConvolutionBackwardData(handle, &alpha, d.w, weight, d.y, grad_out,
                                                  d.conv, algo, workspace.as<void>(),
                                                  workspace_bytes, &beta, d.x, grad_x));
}

template <class T>
void cuda::conv2d_backward_weight(const T* grad_out, const T* x, T* grad_weight,
                                  const Conv2dGeometry& geo) {
  namespace k = cuda::kernels;
  const int64_t w_elems = geo.out_channels * geo.in_channels * geo.kernel_h * geo.kernel_w;
  if (w_elems == 0) return;
  if (geo.batch * geo.out_height * geo.out_width == 0 || geo.height * geo.width == 0) {
    MENTOR_CUDA_CHECK(
        cudaMemsetAsync(grad_weight, 0, sizeof(T) * static_cast<size_t>(w_elems), cuda::stream()));
    return;
  }
  constexpr bool is_float = std::is_same_v<T, float>;
  k::ConvDescriptors d(geo, static_cast<T*>(nullptr));
  cudnnHandle_t handle = k::cudnn_handle();
  const k::ChoiceKey key = k::make_key(geo, is_float ? 0 : 1, 2, cuda::allow_tf32());
  auto it = k::choice_cache().find(key);
  if (it == k::choice_cache().end()) {
    MENTOR_CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, k::requested_math(is_float)));
    cudnnConvolutionBwdFilterAlgoPerf_t perfs[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    int returned = 0;
    MENTOR_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
        handle, d.x, d.y, d.conv, d.w, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &returned, perfs));
    it = k::choice_cache()
             .emplace(key, k::pick(perfs, returned, is_float, "backward-filter", geo))
             .first;
  }
  const k::Choice choice = it->second;
  MENTOR_CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, choice.math));
  const auto algo = static_cast<cudnnConvolutionBwdFilterAlgo_t>(choice.algo);
  size_t workspace_bytes = 0;
  MENTOR_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(handle, d.x, d.y, d.conv, d.w,
                                                                    algo, &workspace_bytes));
  cuda::Scratch workspace(workspace_bytes);
  const float alpha = 1.f, beta = 0.f;
  MENTOR_CUDNN_CHECK(cudnnConvolutionBackwardFilter(handle, &alpha, d.x, x, d.y, grad_out, d.conv,
                                                    algo, workspace.as<void>(), workspace_bytes,
                                                    &beta, d.w, grad_weight));
}

#else   // MENTOR_WITH_CUDNN
// Built without cuDNN (CMake found none): everything else on CUDA works; a convolution says why
// it cannot run instead of failing at link time or in a CUDA error.
namespace {
[[noreturn]] void no_cudnn(const char* pass, const Conv2dGeometry& g) {
  throw Error(mentor::detail::concat(
      "conv2d ", pass, " on CUDA needs cuDNN, and this mentor_cuda was built without it (CMake ",
      "found no cudnn.h / libcudnn); install cuDNN and rebuild, or run the convolution on the CPU ",
      "(x [", g.batch, ", ", g.in_channels, ", ", g.height, ", ", g.width, "])"));
}
}  // namespace

template <class T>
void cuda::conv2d_forward(const T*, const T*, const T*, T*, const Conv2dGeometry& geo) {
  no_cudnn("forward", geo);
}
template <class T>
void cuda::conv2d_backward_input(const T*, const T*, T*, const Conv2dGeometry& geo) {
  no_cudnn("backward (input)", geo);
}
template <class T>
void cuda::conv2d_backward_weight(const T*, const T*, T*, const Conv2dGeometry& geo) {
  no_cudnn("backward (weight)", geo);
}
#endif  // MENTOR_WITH_CUDNN

template <class T>
void cuda::conv2d_backward_bias(const T* grad_out, T* grad_bias, const Conv2dGeometry& geo) {
  if (geo.out_channels <= 0) return;
  MENTOR_CHECK(geo.out_channels <= 0x7fffffff, "conv2d: too many output channels");
  using DT = cuda::device_t<T>;
  cuda::kernels::channel_bias_grad_kernel<DT>
      <<<static_cast<unsigned>(geo.out_channels), 256, 0, cuda::stream()>>>(
          cuda::device_ptr(grad_out), geo.batch, geo.out_channels, geo.out_height * geo.out_width,
          cuda::device_ptr(grad_bias));
  MENTOR_CUDA_CHECK_LAUNCH("channel_bias_grad_kernel");
}

template <class T>
void cuda::upsample_nearest2x_forward(const T* in, T* out, int64_t planes, int64_t height,
                                      int64_t width) {
  using DT = cuda::device_t<T>;
  const int64_t total = planes * 4 * height * width;
  if (total <= 0) return;
  cuda::kernels::upsample2x_forward_kernel<DT>
      <<<cuda::grid_blocks(total, 256), 256, 0, cuda::stream()>>>(
          cuda::device_ptr(in), cuda::device_ptr(out), total, height, width);
  MENTOR_CUDA_CHECK_LAUNCH("upsample2x_forward_kernel");
}

template <class T>
void cuda::upsample_nearest2x_backward(const T* grad_out, T* grad_in, int64_t planes,
                                       int64_t height, int64_t width) {
  using DT = cuda::device_t<T>;
  const int64_t total = planes * height * width;
  if (total <= 0) return;
  cuda::kernels::upsample2x_backward_kernel<DT>
      <<<cuda::grid_blocks(total, 256), 256, 0, cuda::stream()>>>(
          cuda::device_ptr(grad_out), cuda::device_ptr(grad_in), total, height, width);
  MENTOR_CUDA_CHECK_LAUNCH("upsample2x_backward_kernel");
}

#define MENTOR_INSTANTIATE_CONV(T)                                                                \
  template void cuda::conv2d_forward<T>(const T*, const T*, const T*, T*, const Conv2dGeometry&); \
  template void cuda::conv2d_backward_input<T>(const T*, const T*, T*, const Conv2dGeometry&);    \
  template void cuda::conv2d_backward_weight<T>(const T*, const T*, T*, const Conv2dGeometry&);   \
  template void cuda::conv2d_backward_bias<T>(const T*, T*, const Conv2dGeometry&);               \
  template void cuda::upsample_nearest2x_forward<T>(const T*, T*, int64_t, int64_t, int64_t);     \
  template void cuda::upsample_nearest2x_backward<T>(const T*, T*, int64_t, int64_t, int64_t);
MENTOR_INSTANTIATE_CONV(float)
MENTOR_INSTANTIATE_CONV(bf16)

}  // namespace mentor
