// Launchers of ops/elementwise.hpp and ops/unary.hpp (float and bf16).
#include <array>

#include "mentor/backend/cuda/kernels/elementwise.cuh"

namespace mentor {

namespace cuda::kernels {
namespace {

template <BinaryOp Op>
struct BinaryFn {
  __device__ float operator()(float a, float b) const { return apply_binary<Op>(a, b); }
};
template <BinaryOp Op>
struct ScalarFn {
  float scalar;
  __device__ float operator()(float a, float) const { return apply_binary<Op>(a, scalar); }
};
template <UnaryOp Op>
struct UnaryFn {
  float param;
  __device__ float operator()(float x, float) const {
    return math::unary_value<Op, DeviceUnaryMath>(x, param);
  }
};
// a = x, b = grad_out.
template <UnaryOp Op>
struct UnaryBackwardFn {
  float param;
  __device__ float operator()(float x, float g) const {
    return g * math::unary_derivative<Op, DeviceUnaryMath>(x, param);
  }
};

// a = gate, b = up: f_Op(gate) · up.
template <UnaryOp Op>
struct GatedFn {
  __device__ float operator()(float gate, float up) const {
    return math::unary_value<Op, DeviceUnaryMath>(gate, 0.f) * up;
  }
};

// Both gradients of f_Op(gate) · up in one pass; a null output is not written.
template <UnaryOp Op, class T>
__global__ void gated_backward_kernel(const T* __restrict__ gate, const T* __restrict__ up,
                                      const T* __restrict__ grad_out, T* __restrict__ grad_gate,
                                      T* __restrict__ grad_up, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float x = to_acc(gate[i]), g = to_acc(grad_out[i]);
    if (grad_gate)
      grad_gate[i] =
          from_acc<T>(g * to_acc(up[i]) * math::unary_derivative<Op, DeviceUnaryMath>(x, 0.f));
    if (grad_up) grad_up[i] = from_acc<T>(g * math::unary_value<Op, DeviceUnaryMath>(x, 0.f));
  }
}

}  // namespace
}  // namespace cuda::kernels

template <BinaryOp Op, class T>
void cuda::binary(const T* a, const Strides& sa, const T* b, const Strides& sb, T* out,
                  const Shape& shape) {
  using DT = cuda::device_t<T>;
  const Strides so = contiguous_strides(shape);
  cuda::StridedGeometry<3> g = cuda::coalesce<3>(shape, {&sa, &sb, &so});
  if (g.numel == 0) return;
  const bool flat = g.rank == 0 || (g.rank == 1 && g.strides[0][0] == 1 && g.strides[1][0] == 1);
  if (flat) {
    cuda::kernels::launch_map<DT>(cuda::device_ptr(a), cuda::device_ptr(b), cuda::device_ptr(out),
                                  g.numel, cuda::kernels::BinaryFn<Op>{}, "binary(map_kernel)");
    return;
  }
  constexpr int kThreads = 256;
  const unsigned blocks = cuda::grid_blocks(g.numel, kThreads);
  if (g.fits_32bit()) {
    cuda::kernels::binary_strided_kernel<Op, DT, uint32_t><<<blocks, kThreads, 0, cuda::stream()>>>(
        cuda::device_ptr(a), cuda::device_ptr(b), cuda::device_ptr(out),
        cuda::Indexer<3, uint32_t>(g), static_cast<uint32_t>(g.numel));
  } else {
    cuda::kernels::binary_strided_kernel<Op, DT, uint64_t><<<blocks, kThreads, 0, cuda::stream()>>>(
        cuda::device_ptr(a), cuda::device_ptr(b), cuda::device_ptr(out),
        cuda::Indexer<3, uint64_t>(g), static_cast<uint64_t>(g.numel));
  }
  MENTOR_CUDA_CHECK_LAUNCH("binary_strided_kernel");
}

template <BinaryOp Op, class T>
void cuda::binary_scalar(const T* a, float scalar, T* out, int64_t n) {
  using DT = cuda::device_t<T>;
  cuda::kernels::launch_map<DT>(cuda::device_ptr(a), static_cast<const DT*>(nullptr),
                                cuda::device_ptr(out), n, cuda::kernels::ScalarFn<Op>{scalar},
                                "binary_scalar(map_kernel)");
}

template <UnaryOp Op, class T>
void cuda::unary(const T* x, T* out, int64_t n, float param) {
  using DT = cuda::device_t<T>;
  cuda::kernels::launch_map<DT>(cuda::device_ptr(x), static_cast<const DT*>(nullptr),
                                cuda::device_ptr(out), n, cuda::kernels::UnaryFn<Op>{param},
                                "unary(map_kernel)");
}

template <UnaryOp Op, class T>
void cuda::unary_backward(const T* x, const T* grad_out, T* grad_x, int64_t n, float param) {
  using DT = cuda::device_t<T>;
  cuda::kernels::launch_map<DT>(
      cuda::device_ptr(x), cuda::device_ptr(grad_out), cuda::device_ptr(grad_x), n,
      cuda::kernels::UnaryBackwardFn<Op>{param}, "unary_backward(map_kernel)");
}

template <UnaryOp Op, class T>
void cuda::gated_forward(const T* gate, const T* up, T* out, int64_t n) {
  using DT = cuda::device_t<T>;
  cuda::kernels::launch_map<DT>(cuda::device_ptr(gate), cuda::device_ptr(up), cuda::device_ptr(out),
                                n, cuda::kernels::GatedFn<Op>{}, "gated_forward(map_kernel)");
}

template <UnaryOp Op, class T>
void cuda::gated_backward(const T* gate, const T* up, const T* grad_out, T* grad_gate, T* grad_up,
                          int64_t n) {
  using DT = cuda::device_t<T>;
  if (n <= 0) return;
  constexpr int kThreads = 256;
  cuda::kernels::gated_backward_kernel<Op, DT>
      <<<cuda::grid_blocks(n, kThreads), kThreads, 0, cuda::stream()>>>(
          cuda::device_ptr(gate), cuda::device_ptr(up), cuda::device_ptr(grad_out),
          cuda::device_ptr(grad_gate), cuda::device_ptr(grad_up), n);
  MENTOR_CUDA_CHECK_LAUNCH("gated_backward_kernel");
}

#define MENTOR_INSTANTIATE_GATED(OP, T)                                      \
  template void cuda::gated_forward<OP, T>(const T*, const T*, T*, int64_t); \
  template void cuda::gated_backward<OP, T>(const T*, const T*, const T*, T*, T*, int64_t);
#define MENTOR_INSTANTIATE_GATED_ALL(T)      \
  MENTOR_INSTANTIATE_GATED(UnaryOp::Silu, T) \
  MENTOR_INSTANTIATE_GATED(UnaryOp::Gelu, T) \
  MENTOR_INSTANTIATE_GATED(UnaryOp::GeluTanh, T)
MENTOR_INSTANTIATE_GATED_ALL(float)
MENTOR_INSTANTIATE_GATED_ALL(bf16)

#define MENTOR_INSTANTIATE_BINARY(OP, T)                                                    \
  template void cuda::binary<OP, T>(const T*, const Strides&, const T*, const Strides&, T*, \
                                    const Shape&);                                          \
  template void cuda::binary_scalar<OP, T>(const T*, float, T*, int64_t);
#define MENTOR_INSTANTIATE_BINARY_ALL(T)      \
  MENTOR_INSTANTIATE_BINARY(BinaryOp::Add, T) \
  MENTOR_INSTANTIATE_BINARY(BinaryOp::Sub, T) \
  MENTOR_INSTANTIATE_BINARY(BinaryOp::Mul, T) \
  MENTOR_INSTANTIATE_BINARY(BinaryOp::Div, T)
MENTOR_INSTANTIATE_BINARY_ALL(float)
MENTOR_INSTANTIATE_BINARY_ALL(bf16)

#define MENTOR_INSTANTIATE_UNARY(OP, T)                           \
  template void cuda::unary<OP, T>(const T*, T*, int64_t, float); \
  template void cuda::unary_backward<OP, T>(const T*, const T*, T*, int64_t, float);
#define MENTOR_INSTANTIATE_UNARY_ALL(T)           \
  MENTOR_INSTANTIATE_UNARY(UnaryOp::Exp, T)       \
  MENTOR_INSTANTIATE_UNARY(UnaryOp::Log, T)       \
  MENTOR_INSTANTIATE_UNARY(UnaryOp::Sqrt, T)      \
  MENTOR_INSTANTIATE_UNARY(UnaryOp::Rsqrt, T)     \
  MENTOR_INSTANTIATE_UNARY(UnaryOp::Tanh, T)      \
  MENTOR_INSTANTIATE_UNARY(UnaryOp::Sigmoid, T)   \
  MENTOR_INSTANTIATE_UNARY(UnaryOp::Silu, T)      \
  MENTOR_INSTANTIATE_UNARY(UnaryOp::Relu, T)      \
  MENTOR_INSTANTIATE_UNARY(UnaryOp::Abs, T)       \
  MENTOR_INSTANTIATE_UNARY(UnaryOp::Square, T)    \
  MENTOR_INSTANTIATE_UNARY(UnaryOp::Pow, T)       \
  MENTOR_INSTANTIATE_UNARY(UnaryOp::Gelu, T)      \
  MENTOR_INSTANTIATE_UNARY(UnaryOp::GeluTanh, T)  \
  MENTOR_INSTANTIATE_UNARY(UnaryOp::QuickGelu, T) \
  MENTOR_INSTANTIATE_UNARY(UnaryOp::LeakyRelu, T)
MENTOR_INSTANTIATE_UNARY_ALL(float)
MENTOR_INSTANTIATE_UNARY_ALL(bf16)

}  // namespace mentor
