// The device primitives the tensor core is built on (api.hpp): fill, strided copy, strided
// accumulate (deterministic broadcast reductions: fixed order, no atomics, for a given device),
// element conversion and Philox fills.
// Instantiated for every mentor element type.
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <type_traits>

#include "mentor/backend/cuda/check.hpp"
#include "mentor/backend/cuda/kernels/common.cuh"
#include "mentor/backend/cuda/kernels/strided.cuh"
#include "mentor/backend/cuda/scratch.hpp"
#include "mentor/core/cuda_api.hpp"
#include "mentor/core/dtype.hpp"
#include "mentor/core/random.hpp"

namespace mentor::cuda {

namespace {

constexpr int kThreads = 256;

// ---- fill ------------------------------------------------------------------------------------
template <class T>
__global__ void fill_kernel(T* dst, int64_t n, T value) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = value;
}

// ---- strided copy ----------------------------------------------------------------------------
// E is a plain word of the copied width (1..16 bytes): copies move bits, never convert.
template <class E, class Index>
__global__ void copy_strided_kernel(const E* src, E* dst, Indexer<2, Index> indexer, Index n) {
  indexer.for_each(n, [&](Index, const Index(&off)[2]) { dst[off[1]] = src[off[0]]; });
}

template <class E>
void launch_copy(const void* src, void* dst, const StridedGeometry<2>& g) {
  const unsigned blocks = grid_blocks(g.numel, kThreads);
  if (g.fits_32bit()) {
    copy_strided_kernel<E, uint32_t><<<blocks, kThreads, 0, stream()>>>(
        static_cast<const E*>(src), static_cast<E*>(dst), Indexer<2, uint32_t>(g),
        static_cast<uint32_t>(g.numel));
  } else {
    copy_strided_kernel<E, uint64_t><<<blocks, kThreads, 0, stream()>>>(
        static_cast<const E*>(src), static_cast<E*>(dst), Indexer<2, uint64_t>(g),
        static_cast<uint64_t>(g.numel));
  }
  MENTOR_CUDA_CHECK_LAUNCH("copy_strided_kernel");
}

// Widest word (bytes) that moves whole elements of both views at once: the innermost dimension
// contiguous on both sides, every size/stride/address a multiple of it.
int copy_word_bytes(const StridedGeometry<2>& g, const void* src, void* dst, int elem_bytes) {
  if (g.rank == 0 || !g.inner_contiguous(0) || !g.inner_contiguous(1)) return elem_bytes;
  int width = 16;
  while (width > elem_bytes) {
    bool ok = pointer_alignment(src) >= width && pointer_alignment(dst) >= width &&
              (g.sizes[g.rank - 1] * elem_bytes) % width == 0;
    for (int d = 0; ok && d + 1 < g.rank; ++d)
      ok = (g.strides[0][d] * elem_bytes) % width == 0 &&
           (g.strides[1][d] * elem_bytes) % width == 0;
    if (ok) break;
    width >>= 1;
  }
  return width;
}

// ---- accumulate --------------------------------------------------------------------------------
// Accumulation types: float for float/bf16, double for double, 64-bit integers otherwise (the
// integer results wrap exactly like the CPU's sequential additions; bool becomes "any").
template <class T>
struct add_acc {
  using type = long long;
};
template <>
struct add_acc<float> {
  using type = float;
};
template <>
struct add_acc<__nv_bfloat16> {
  using type = float;
};
template <>
struct add_acc<double> {
  using type = double;
};
template <class T>
using add_acc_t = typename add_acc<T>::type;

template <class T>
__device__ __forceinline__ add_acc_t<T> load_acc(T v) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __bfloat162float(v);
  } else {
    return static_cast<add_acc_t<T>>(v);
  }
}
template <class T>
__device__ __forceinline__ T store_acc(add_acc_t<T> v) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __float2bfloat16_rn(v);
  } else if constexpr (std::is_same_v<T, bool>) {
    return v != 0;
  } else {
    return static_cast<T>(v);
  }
}

template <class T, class Index>
__global__ void add_strided_kernel(const T* src, T* dst, Indexer<2, Index> indexer, Index n) {
  indexer.for_each(n, [&](Index, const Index(&off)[2]) {
    dst[off[1]] = store_acc<T>(load_acc(dst[off[1]]) + load_acc(src[off[0]]));
  });
}

// Broadcast reduction dst[m] += sum_r src[m, r], deterministic: no atomics; the order of every
// addition is fixed by the launch shape alone. When the reduction is split over gridDim.y blocks,
// split y writes its sum to partial[y * outputs + m] and reduce_add_finish_kernel adds the splits
// in order. `kept` indexes outputs (operand 0: src, 1: dst), `reduced` the
// summed positions (operand 0: src). kReduceAlongX: the 32 lanes of a warp walk the reduction
// (the reduced dimension is the contiguous one); otherwise lanes walk outputs (e.g. bias grads).
template <class T, bool kReduceAlongX>
__global__ void reduce_add_kernel(const T* src, T* dst, Indexer<2, uint64_t> kept,
                                  Indexer<1, uint64_t> reduced, uint64_t outputs,
                                  uint64_t reduce_count, add_acc_t<T>* partial) {
  using A = add_acc_t<T>;
  __shared__ A scratch[kThreads];
  const unsigned tx = threadIdx.x, ty = threadIdx.y;
  uint64_t m, r_begin, r_step;
  if constexpr (kReduceAlongX) {
    m = uint64_t(blockIdx.x) * blockDim.y + ty;
    r_begin = uint64_t(blockIdx.y) * blockDim.x + tx;
    r_step = uint64_t(gridDim.y) * blockDim.x;
  } else {
    m = uint64_t(blockIdx.x) * blockDim.x + tx;
    r_begin = uint64_t(blockIdx.y) * blockDim.y + ty;
    r_step = uint64_t(gridDim.y) * blockDim.y;
  }
  A sum = A(0);
  uint64_t out_off[2] = {0, 0};
  if (m < outputs) {
    kept.offsets(m, out_off);
    for (uint64_t r = r_begin; r < reduce_count; r += r_step) {
      uint64_t in_off[1];
      reduced.offsets(r, in_off);
      sum += load_acc(src[out_off[0] + in_off[0]]);
    }
  }
  const unsigned flat = ty * blockDim.x + tx;
  scratch[flat] = sum;
  __syncthreads();
  // Sum the partial values that belong to the same output.
  bool writer;
  if constexpr (kReduceAlongX) {
    if (tx == 0) {
      for (unsigned i = 1; i < blockDim.x; ++i) sum += scratch[ty * blockDim.x + i];
    }
    writer = tx == 0;
  } else {
    if (ty == 0) {
      for (unsigned i = 1; i < blockDim.y; ++i) sum += scratch[i * blockDim.x + tx];
    }
    writer = ty == 0;
  }
  if (!writer || m >= outputs) return;
  if (partial != nullptr) {
    partial[uint64_t(blockIdx.y) * outputs + m] = sum;
  } else {
    dst[out_off[1]] = store_acc<T>(load_acc(dst[out_off[1]]) + sum);
  }
}

template <class T>
__global__ void reduce_add_finish_kernel(const add_acc_t<T>* partial, T* dst,
                                         Indexer<2, uint64_t> kept, uint64_t outputs,
                                         uint64_t splits) {
  kept.for_each(outputs, [&](uint64_t m, const uint64_t(&off)[2]) {
    add_acc_t<T> sum = partial[m];
    for (uint64_t y = 1; y < splits; ++y) sum += partial[y * outputs + m];
    dst[off[1]] = store_acc<T>(load_acc(dst[off[1]]) + sum);
  });
}

template <class T>
void launch_reduce_add(const T* src, const Strides& src_strides, T* dst, const Strides& dst_strides,
                       const Shape& shape) {
  using A = add_acc_t<T>;
  // Split the dimensions into kept (dst stride != 0) and reduced (dst stride 0, size > 1).
  Shape kept_shape, reduced_shape;
  Strides kept_src, kept_dst, reduced_src;
  for (int d = 0; d < shape.rank(); ++d) {
    if (shape[d] == 1) continue;
    if (dst_strides[d] == 0) {
      reduced_shape.push_back(shape[d]);
      reduced_src.push_back(src_strides[d]);
    } else {
      kept_shape.push_back(shape[d]);
      kept_src.push_back(src_strides[d]);
      kept_dst.push_back(dst_strides[d]);
    }
  }
  StridedGeometry<2> kept = coalesce<2>(kept_shape, {&kept_src, &kept_dst});
  StridedGeometry<1> reduced = coalesce<1>(reduced_shape, {&reduced_src});
  const int64_t outputs = kept.numel, reduce_count = reduced.numel;
  // The reduction runs along the lanes when its innermost dimension is the contiguous one.
  const bool along_x = reduced.rank > 0 && reduced.strides[0][reduced.rank - 1] == 1 &&
                       !(kept.rank > 0 && kept.strides[0][kept.rank - 1] == 1);
  dim3 block;
  int64_t out_blocks, r_per_step;
  if (along_x) {
    block = dim3(32, kThreads / 32);
    out_blocks = ceil_div(outputs, block.y);
    r_per_step = block.x;
  } else {
    unsigned bx = 1;
    while (bx < 32 && bx < static_cast<unsigned>(outputs)) bx <<= 1;
    block = dim3(bx, kThreads / bx);
    out_blocks = ceil_div(outputs, block.x);
    r_per_step = block.y;
  }
  // Split the reduction over more blocks while the outputs alone do not fill the device, keeping
  // at least 16 additions per thread. Then splits * out_blocks stays within about twice the
  // target, so the per-split sums (splits * outputs values) stay small.
  const int64_t target_blocks = 4LL * multiprocessor_count();
  int64_t splits = 1;
  if (out_blocks < target_blocks) {
    splits = ceil_div(target_blocks, out_blocks);
    int64_t max_splits = std::max<int64_t>(1, reduce_count / (r_per_step * 16));
    splits = std::min<int64_t>({splits, max_splits, 65535});
  }
  MENTOR_CHECK(out_blocks <= 0x7fffffff, "add_strided: too many outputs (", outputs, ")");
  dim3 grid(static_cast<unsigned>(out_blocks), static_cast<unsigned>(splits));
  // Every split writes every output's slot (zero when its range is empty): no memset needed. One
  // split adds into dst directly (zero bytes: no buffer).
  Scratch partial_sums(splits > 1 ? static_cast<size_t>(splits * outputs) * sizeof(A) : 0);
  A* partial = partial_sums.as<A>();
  Indexer<2, uint64_t> kept_indexer(kept);
  Indexer<1, uint64_t> reduced_indexer(reduced);
  if (along_x) {
    reduce_add_kernel<T, true><<<grid, block, 0, stream()>>>(
        src, dst, kept_indexer, reduced_indexer, outputs, reduce_count, partial);
  } else {
    reduce_add_kernel<T, false><<<grid, block, 0, stream()>>>(
        src, dst, kept_indexer, reduced_indexer, outputs, reduce_count, partial);
  }
  MENTOR_CUDA_CHECK_LAUNCH("reduce_add_kernel");
  if (partial != nullptr) {
    reduce_add_finish_kernel<T><<<grid_blocks(outputs, kThreads), kThreads, 0, stream()>>>(
        partial, dst, kept_indexer, outputs, static_cast<uint64_t>(splits));
    MENTOR_CUDA_CHECK_LAUNCH("reduce_add_finish_kernel");
  }
}

// ---- conversion and random fills -------------------------------------------------------------
template <class To, class From>
__global__ void convert_kernel(const From* src, To* dst, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = convert_element<To>(src[i]);
}

// Value i of the fill is word i % 4 of Philox block (offset + i / 4), exactly as on the CPU
// (random.hpp); the affine map is rounded step by step (no fused multiply-add), as the host does.
template <class T>
__global__ void philox_uniform_kernel(T* dst, int64_t n, uint64_t seed, uint64_t block_offset,
                                      float low, float high) {
  const float range = __fsub_rn(high, low);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    float u = philox_uniform_at(seed, block_offset, i);
    dst[i] = convert_element<T>(__fadd_rn(low, __fmul_rn(range, u)));
  }
}

template <class T>
__global__ void philox_normal_kernel(T* dst, int64_t n, uint64_t seed, uint64_t block_offset,
                                     float mean, float std) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    float z = philox_normal_at(seed, block_offset, i);
    dst[i] = convert_element<T>(__fadd_rn(mean, __fmul_rn(std, z)));
  }
}

}  // namespace

// ---- launchers -------------------------------------------------------------------------------
template <class T>
void fill(T* dst, int64_t n, T value) {
  if (n <= 0) return;
  unsigned char zero[sizeof(T)] = {};
  if (std::memcmp(&value, zero, sizeof(T)) == 0) {
    MENTOR_CUDA_CHECK(cudaMemsetAsync(dst, 0, static_cast<size_t>(n) * sizeof(T), stream()));
    return;
  }
  fill_kernel<T><<<grid_blocks(n, kThreads), kThreads, 0, stream()>>>(dst, n, value);
  MENTOR_CUDA_CHECK_LAUNCH("fill_kernel");
}

template <class T>
void copy_strided(const T* src, const Strides& src_strides, T* dst, const Strides& dst_strides,
                  const Shape& shape) {
  StridedGeometry<2> g = coalesce<2>(shape, {&src_strides, &dst_strides});
  if (g.numel == 0) return;
  if (g.rank == 0 || (g.rank == 1 && g.strides[0][0] == 1 && g.strides[1][0] == 1)) {
    MENTOR_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(g.numel) * sizeof(T),
                                      cudaMemcpyDeviceToDevice, stream()));
    return;
  }
  const int elem = static_cast<int>(sizeof(T));
  const int width = copy_word_bytes(g, src, dst, elem);
  if (width != elem) {  // re-express the views in words of `width` bytes
    const int64_t per_word = width / elem;
    g.sizes[g.rank - 1] /= per_word;
    for (int d = 0; d + 1 < g.rank; ++d) {
      g.strides[0][d] /= per_word;
      g.strides[1][d] /= per_word;
    }
    g.numel /= per_word;
  }
  switch (width) {
    case 16:
      launch_copy<uint4>(src, dst, g);
      break;
    case 8:
      launch_copy<uint2>(src, dst, g);
      break;
    case 4:
      launch_copy<uint32_t>(src, dst, g);
      break;
    case 2:
      launch_copy<uint16_t>(src, dst, g);
      break;
    default:
      launch_copy<uint8_t>(src, dst, g);
      break;
  }
}

template <class T>
void add_strided(const T* src_in, const Strides& src_strides, T* dst_in, const Strides& dst_strides,
                 const Shape& shape) {
  using DT = device_t<T>;
  const DT* src = device_ptr(src_in);
  DT* dst = device_ptr(dst_in);
  if (shape.numel() == 0) return;
  bool reduces = false;
  for (int d = 0; d < shape.rank(); ++d) reduces = reduces || (shape[d] > 1 && dst_strides[d] == 0);
  if (reduces) {
    launch_reduce_add<DT>(src, src_strides, dst, dst_strides, shape);
    return;
  }
  StridedGeometry<2> g = coalesce<2>(shape, {&src_strides, &dst_strides});
  const unsigned blocks = grid_blocks(g.numel, kThreads);
  if (g.fits_32bit()) {
    add_strided_kernel<DT, uint32_t><<<blocks, kThreads, 0, stream()>>>(
        src, dst, Indexer<2, uint32_t>(g), static_cast<uint32_t>(g.numel));
  } else {
    add_strided_kernel<DT, uint64_t><<<blocks, kThreads, 0, stream()>>>(
        src, dst, Indexer<2, uint64_t>(g), static_cast<uint64_t>(g.numel));
  }
  MENTOR_CUDA_CHECK_LAUNCH("add_strided_kernel");
}

template <class To, class From>
void convert(const From* src, To* dst, int64_t n) {
  if (n <= 0) return;
  convert_kernel<To, From><<<grid_blocks(n, kThreads), kThreads, 0, stream()>>>(src, dst, n);
  MENTOR_CUDA_CHECK_LAUNCH("convert_kernel");
}

template <class T>
void philox_uniform(T* dst, int64_t n, uint64_t seed, uint64_t block_offset, float low,
                    float high) {
  if (n <= 0) return;
  philox_uniform_kernel<T>
      <<<grid_blocks(n, kThreads), kThreads, 0, stream()>>>(dst, n, seed, block_offset, low, high);
  MENTOR_CUDA_CHECK_LAUNCH("philox_uniform_kernel");
}

template <class T>
void philox_normal(T* dst, int64_t n, uint64_t seed, uint64_t block_offset, float mean, float std) {
  if (n <= 0) return;
  philox_normal_kernel<T>
      <<<grid_blocks(n, kThreads), kThreads, 0, stream()>>>(dst, n, seed, block_offset, mean, std);
  MENTOR_CUDA_CHECK_LAUNCH("philox_normal_kernel");
}

// ---- explicit instantiations: every element type ---------------------------------------------
#define MENTOR_INSTANTIATE_ELEMENT(T)                                                        \
  template void fill<T>(T*, int64_t, T);                                                     \
  template void copy_strided<T>(const T*, const Strides&, T*, const Strides&, const Shape&); \
  template void add_strided<T>(const T*, const Strides&, T*, const Strides&, const Shape&);
MENTOR_INSTANTIATE_ELEMENT(float)
MENTOR_INSTANTIATE_ELEMENT(double)
MENTOR_INSTANTIATE_ELEMENT(bf16)
MENTOR_INSTANTIATE_ELEMENT(int32_t)
MENTOR_INSTANTIATE_ELEMENT(int64_t)
MENTOR_INSTANTIATE_ELEMENT(uint8_t)
MENTOR_INSTANTIATE_ELEMENT(bool)
#undef MENTOR_INSTANTIATE_ELEMENT

#define MENTOR_INSTANTIATE_CONVERT_FROM(To)                         \
  template void convert<To, float>(const float*, To*, int64_t);     \
  template void convert<To, double>(const double*, To*, int64_t);   \
  template void convert<To, bf16>(const bf16*, To*, int64_t);       \
  template void convert<To, int32_t>(const int32_t*, To*, int64_t); \
  template void convert<To, int64_t>(const int64_t*, To*, int64_t); \
  template void convert<To, uint8_t>(const uint8_t*, To*, int64_t); \
  template void convert<To, bool>(const bool*, To*, int64_t);
MENTOR_INSTANTIATE_CONVERT_FROM(float)
MENTOR_INSTANTIATE_CONVERT_FROM(double)
MENTOR_INSTANTIATE_CONVERT_FROM(bf16)
MENTOR_INSTANTIATE_CONVERT_FROM(int32_t)
MENTOR_INSTANTIATE_CONVERT_FROM(int64_t)
MENTOR_INSTANTIATE_CONVERT_FROM(uint8_t)
MENTOR_INSTANTIATE_CONVERT_FROM(bool)
#undef MENTOR_INSTANTIATE_CONVERT_FROM

#define MENTOR_INSTANTIATE_RANDOM(T)                                              \
  template void philox_uniform<T>(T*, int64_t, uint64_t, uint64_t, float, float); \
  template void philox_normal<T>(T*, int64_t, uint64_t, uint64_t, float, float);
MENTOR_INSTANTIATE_RANDOM(float)
MENTOR_INSTANTIATE_RANDOM(double)
MENTOR_INSTANTIATE_RANDOM(bf16)
#undef MENTOR_INSTANTIATE_RANDOM

}  // namespace mentor::cuda
