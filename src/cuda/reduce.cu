// Launchers of ops/reduce.hpp: sums over one axis (double accumulation, deterministic), first
// arg-max/arg-min per row, sorted top-k per row (CUB segmented radix sort, stable) and the
// scatter used by their gradients. float and bf16.
#include <cuda_runtime.h>
#include <cub/device/device_segmented_radix_sort.cuh>

#include <algorithm>
#include <cstdint>

#include "mentor/backend/cuda/kernels/common.cuh"
#include "mentor/backend/cuda/kernels/rows.cuh"
#include "mentor/backend/cuda/scratch.hpp"
#include "mentor/backend/launch/reduce.hpp"

namespace mentor {

namespace cuda::kernels {
namespace {

// ---- sum over an axis --------------------------------------------------------------------------
// x [rows, n] (inner == 1): a warp per (row, split); lanes walk the row.
template <class T>
__global__ void sum_rows_kernel(const T* __restrict__ x, int64_t rows, int64_t n, int64_t chunk,
                                double* __restrict__ partial, T* __restrict__ out, double scale) {
  const int64_t row = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x & 31;
  if (row >= rows) return;
  const int64_t begin = int64_t(blockIdx.y) * chunk;
  const int64_t end = min(n, begin + chunk);
  const T* xr = x + row * n;
  double acc = 0.0;
  for (int64_t k = begin + lane; k < end; k += 32) acc += static_cast<double>(to_acc(xr[k]));
  acc = warp_sum(acc);
  if (lane != 0) return;
  if (partial != nullptr) {
    partial[int64_t(blockIdx.y) * rows + row] = acc;
  } else {
    out[row] = from_acc<T>(acc * scale);
  }
}

// x [outer, n, inner] (inner > 1): outputs m = o * inner + j along x (coalesced), the reduced index
// along y, one split of the reduced range per blockIdx.y.
template <class T>
__global__ void sum_columns_kernel(const T* __restrict__ x, int64_t outer, int64_t n, int64_t inner,
                                   int64_t chunk, double* __restrict__ partial, T* __restrict__ out,
                                   double scale) {
  __shared__ double scratch[8][33];
  const int64_t outputs = outer * inner;
  const int64_t m = int64_t(blockIdx.x) * 32 + threadIdx.x;
  const int64_t begin = int64_t(blockIdx.y) * chunk;
  const int64_t end = min(n, begin + chunk);
  double acc = 0.0;
  if (m < outputs) {
    const int64_t o = m / inner, j = m % inner;
    const T* base = x + o * n * inner + j;
    for (int64_t k = begin + threadIdx.y; k < end; k += blockDim.y)
      acc += static_cast<double>(to_acc(base[k * inner]));
  }
  scratch[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y != 0 || m >= outputs) return;
  for (unsigned i = 1; i < blockDim.y; ++i) acc += scratch[i][threadIdx.x];
  if (partial != nullptr) {
    partial[int64_t(blockIdx.y) * outputs + m] = acc;
  } else {
    out[m] = from_acc<T>(acc * scale);
  }
}

// out[m] = scale · Σ_s partial[s, m], in split order (deterministic).
template <class T>
__global__ void sum_finish_kernel(const double* __restrict__ partial, int64_t outputs,
                                  int64_t splits, T* __restrict__ out, double scale) {
  for (int64_t m = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; m < outputs;
       m += int64_t(gridDim.x) * blockDim.x) {
    double acc = 0.0;
    for (int64_t s = 0; s < splits; ++s) acc += partial[s * outputs + m];
    out[m] = from_acc<T>(acc * scale);
  }
}

// ---- arg-best ----------------------------------------------------------------------------------
struct Best {
  float value;
  int64_t index;  // INT64_MAX: nothing seen
};
// "a is better than b": NaN beats any number; otherwise larger (or smaller) wins.
__device__ __forceinline__ bool better_value(float a, float b, bool largest) {
  if (a != a) return b == b;
  return largest ? a > b : a < b;
}
__device__ __forceinline__ Best best_merge(Best a, Best b, bool largest) {
  if (a.index == INT64_MAX) return b;
  if (b.index == INT64_MAX) return a;
  if (better_value(b.value, a.value, largest)) return b;
  if (better_value(a.value, b.value, largest)) return a;
  return a.index <= b.index ? a : b;  // equal (or both NaN): the first occurrence
}
__device__ __forceinline__ Best warp_best(Best v, bool largest) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    Best other{__shfl_xor_sync(0xffffffffu, v.value, offset),
               static_cast<int64_t>(
                   __shfl_xor_sync(0xffffffffu, static_cast<long long>(v.index), offset))};
    v = best_merge(v, other, largest);
  }
  return v;
}

template <int kGroup, class T>
__global__ void arg_best_rows_kernel(const T* __restrict__ x, int64_t rows, int64_t n, bool largest,
                                     T* __restrict__ values, int64_t* __restrict__ indices) {
  using G = RowGroup<kGroup>;
  __shared__ Best scratch[32];
  for (int64_t r = G::first_row(); r < rows; r += G::row_step()) {
    const T* xr = x + r * n;
    Best best{0.f, INT64_MAX};
    for (int64_t i = G::lane(); i < n; i += kGroup) {
      const float v = to_acc(xr[i]);
      if (best.index == INT64_MAX || better_value(v, best.value, largest)) best = {v, i};
    }
    best = G::reduce(best, scratch, Best{0.f, INT64_MAX},
                     [largest](Best v) { return warp_best(v, largest); });
    if (G::lane() == 0) {
      indices[r] = best.index;
      if (values != nullptr) values[r] = xr[best.index];
    }
  }
}

// ---- top-k
// --------------------------------------------------------------------------------------- Sort
// keys: the value in float with NaN made one canonical positive NaN (largest under the radix order)
// and -0 made +0 (equal values keep index order: the sort is stable).
template <class T>
__global__ void topk_keys_kernel(const T* __restrict__ x, int64_t count, int64_t n,
                                 float* __restrict__ keys, int32_t* __restrict__ positions) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x) {
    float v = to_acc(x[i]);
    if (v != v) v = __int_as_float(0x7fc00000);
    if (v == 0.f) v = 0.f;
    keys[i] = v;
    positions[i] = static_cast<int32_t>(i % n);
  }
}

__global__ void segment_offsets_kernel(int* offsets, int64_t segments, int64_t n) {
  for (int64_t s = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; s <= segments;
       s += int64_t(gridDim.x) * blockDim.x)
    offsets[s] = static_cast<int>(s * n);
}

template <class T>
__global__ void topk_gather_kernel(const T* __restrict__ x, const int32_t* __restrict__ sorted,
                                   int64_t rows, int64_t n, int64_t k, T* __restrict__ values,
                                   int64_t* __restrict__ indices) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < rows * k;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / k, j = i % k;
    const int64_t index = sorted[r * n + j];
    indices[i] = index;
    values[i] = x[r * n + index];
  }
}

template <class T>
__global__ void scatter_rows_add_kernel(const T* __restrict__ g, const int64_t* __restrict__ idx,
                                        int64_t rows, int64_t k, int64_t n,
                                        T* __restrict__ grad_x) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < rows * k;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / k;
    T& dst = grad_x[r * n + idx[i]];
    dst = from_acc<T>(to_acc(dst) + to_acc(g[i]));
  }
}

}  // namespace
}  // namespace cuda::kernels

template <class T>
void cuda::sum_axis(const T* x_in, T* out_in, int64_t outer, int64_t n, int64_t inner,
                    float scale) {
  using DT = cuda::device_t<T>;
  const DT* x = cuda::device_ptr(x_in);
  DT* out = cuda::device_ptr(out_in);
  const int64_t outputs = outer * inner;
  if (outputs <= 0) return;
  const double scale64 = static_cast<double>(scale);
  const int64_t target_blocks = 4LL * cuda::multiprocessor_count();
  const bool rows_layout = inner == 1;
  const int64_t out_blocks = rows_layout ? cuda::ceil_div(outputs, 8) : cuda::ceil_div(outputs, 32);
  const int64_t min_per_split = rows_layout ? 32 * 64 : 8 * 64;
  int64_t splits = 1;
  if (out_blocks < target_blocks && n > min_per_split) {
    splits = std::min<int64_t>(
        {cuda::ceil_div(target_blocks, out_blocks), cuda::ceil_div(n, min_per_split), 65535});
  }
  const int64_t chunk = std::max<int64_t>(1, cuda::ceil_div(n, splits));
  splits = std::max<int64_t>(1, cuda::ceil_div(n, chunk));
  MENTOR_CHECK(out_blocks <= 0x7fffffff, "cuda::sum_axis: ", outputs, " outputs are too many");
  // One split writes the outputs directly (no partial sums: zero bytes, a null buffer).
  cuda::Scratch partial(splits > 1 ? static_cast<size_t>(splits * outputs) * sizeof(double) : 0);
  double* partial_ptr = partial.as<double>();
  dim3 grid(static_cast<unsigned>(out_blocks), static_cast<unsigned>(splits));
  if (rows_layout) {
    cuda::kernels::sum_rows_kernel<DT>
        <<<grid, 256, 0, cuda::stream()>>>(x, outputs, n, chunk, partial_ptr, out, scale64);
    MENTOR_CUDA_CHECK_LAUNCH("sum_rows_kernel");
  } else {
    cuda::kernels::sum_columns_kernel<DT><<<grid, dim3(32, 8), 0, cuda::stream()>>>(
        x, outer, n, inner, chunk, partial_ptr, out, scale64);
    MENTOR_CUDA_CHECK_LAUNCH("sum_columns_kernel");
  }
  if (partial_ptr != nullptr) {
    cuda::kernels::sum_finish_kernel<DT>
        <<<cuda::grid_blocks(outputs, 256), 256, 0, cuda::stream()>>>(partial_ptr, outputs, splits,
                                                                      out, scale64);
    MENTOR_CUDA_CHECK_LAUNCH("sum_finish_kernel");
  }
}

template <class T>
void cuda::arg_best_rows(const T* x, int64_t rows, int64_t n, bool largest, T* values,
                         int64_t* indices) {
  if (rows <= 0) return;
  MENTOR_CHECK(n >= 1, "cuda::arg_best_rows: empty rows");
  MENTOR_LAUNCH_ROWS(cuda::kernels::arg_best_rows_kernel, n, rows, cuda::device_ptr(x), rows, n,
                     largest, cuda::device_ptr(values), indices);
}

template <class T>
void cuda::topk_rows(const T* x_in, int64_t rows, int64_t n, int64_t k, bool largest, T* values_in,
                     int64_t* indices) {
  using DT = cuda::device_t<T>;
  if (rows <= 0 || k <= 0) return;
  MENTOR_CHECK(k <= n, "cuda::topk_rows: k = ", k, " exceeds the row length ", n);
  MENTOR_CHECK(n < (int64_t{1} << 30), "cuda::topk_rows: rows of ", n, " elements are too long");
  const DT* x = cuda::device_ptr(x_in);
  DT* values = cuda::device_ptr(values_in);
  // Rows per sort: the sort indexes items with int.
  const int64_t rows_per_pass =
      std::max<int64_t>(1, std::min<int64_t>(rows, (int64_t{1} << 30) / n));
  const int64_t items = rows_per_pass * n;
  cuda::Scratch keys_in(items * sizeof(float)), keys_out(items * sizeof(float));
  cuda::Scratch pos_in(items * sizeof(int32_t)), pos_out(items * sizeof(int32_t));
  cuda::Scratch offsets((rows_per_pass + 1) * sizeof(int));
  size_t temp_bytes = 0;
  const cudaStream_t s = cuda::stream();
  auto sort = [&](void* temp, size_t& bytes, int count, int segments) {
    const int* begin = offsets.as<int>();
    if (largest) {
      MENTOR_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairsDescending(
          temp, bytes, keys_in.as<float>(), keys_out.as<float>(), pos_in.as<int32_t>(),
          pos_out.as<int32_t>(), count, segments, begin, begin + 1, 0, 32, s));
    } else {
      MENTOR_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairs(
          temp, bytes, keys_in.as<float>(), keys_out.as<float>(), pos_in.as<int32_t>(),
          pos_out.as<int32_t>(), count, segments, begin, begin + 1, 0, 32, s));
    }
  };
  sort(nullptr, temp_bytes, static_cast<int>(items), static_cast<int>(rows_per_pass));
  cuda::Scratch temp(std::max<size_t>(temp_bytes, 1));
  cuda::kernels::segment_offsets_kernel<<<cuda::grid_blocks(rows_per_pass + 1, 256), 256, 0, s>>>(
      offsets.as<int>(), rows_per_pass, n);
  MENTOR_CUDA_CHECK_LAUNCH("segment_offsets_kernel");
  for (int64_t r0 = 0; r0 < rows; r0 += rows_per_pass) {
    const int64_t pass_rows = std::min(rows_per_pass, rows - r0);
    const int64_t count = pass_rows * n;
    cuda::kernels::topk_keys_kernel<DT><<<cuda::grid_blocks(count, 256), 256, 0, s>>>(
        x + r0 * n, count, n, keys_in.as<float>(), pos_in.as<int32_t>());
    MENTOR_CUDA_CHECK_LAUNCH("topk_keys_kernel");
    size_t bytes = temp_bytes;
    sort(temp.as<void>(), bytes, static_cast<int>(count), static_cast<int>(pass_rows));
    cuda::kernels::topk_gather_kernel<DT><<<cuda::grid_blocks(pass_rows * k, 256), 256, 0, s>>>(
        x + r0 * n, pos_out.as<int32_t>(), pass_rows, n, k, values + r0 * k, indices + r0 * k);
    MENTOR_CUDA_CHECK_LAUNCH("topk_gather_kernel");
  }
}

template <class T>
void cuda::scatter_rows_add(const T* g, const int64_t* idx, int64_t rows, int64_t k, int64_t n,
                            T* grad_x) {
  if (rows <= 0 || k <= 0) return;
  using DT = cuda::device_t<T>;
  cuda::kernels::scatter_rows_add_kernel<DT>
      <<<cuda::grid_blocks(rows * k, 256), 256, 0, cuda::stream()>>>(
          cuda::device_ptr(g), idx, rows, k, n, cuda::device_ptr(grad_x));
  MENTOR_CUDA_CHECK_LAUNCH("scatter_rows_add_kernel");
}

#define MENTOR_INSTANTIATE_REDUCE(T)                                                         \
  template void cuda::sum_axis<T>(const T*, T*, int64_t, int64_t, int64_t, float);           \
  template void cuda::arg_best_rows<T>(const T*, int64_t, int64_t, bool, T*, int64_t*);      \
  template void cuda::topk_rows<T>(const T*, int64_t, int64_t, int64_t, bool, T*, int64_t*); \
  template void cuda::scatter_rows_add<T>(const T*, const int64_t*, int64_t, int64_t, int64_t, T*);
MENTOR_INSTANTIATE_REDUCE(float)
MENTOR_INSTANTIATE_REDUCE(bf16)

}  // namespace mentor
