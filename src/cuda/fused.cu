// The multi-tensor AdamW step of fused.hpp (plus the global gradient norm for clipping).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "mentor/backend/cuda/fused.hpp"
#include "mentor/backend/cuda/kernels/common.cuh"
#include "mentor/backend/cuda/scratch.hpp"

namespace mentor::cuda {

namespace {

// ---- multi-tensor AdamW -----------------------------------------------------------------------
constexpr int kMaxTensors = 384;   // per launch: the table travels as a kernel parameter
constexpr int64_t kChunk = 16384;  // elements per block
constexpr int kAdamThreads = 256;

template <class T>
struct TensorTable {
  int count;
  T* param[kMaxTensors];
  const T* grad[kMaxTensors];
  float* exp_avg[kMaxTensors];
  float* exp_avg_sq[kMaxTensors];
  int64_t numel[kMaxTensors];
  int32_t block_start[kMaxTensors + 1];  // first block of tensor i; [count] = total blocks
  uint8_t decay[kMaxTensors];
};

struct AdamWScalars {
  float beta1, beta2, one_minus_beta1, one_minus_beta2, eps;
  float decay_factor;  // 1 − lr · weight_decay
  float step_size;     // lr / (1 − β1^step)
  float inv_sqrt_bc2;  // 1 / sqrt(1 − β2^step)
  float grad_scale;
};

// The tensor a block works on: the last i with block_start[i] <= block.
template <class Table>
__device__ __forceinline__ int tensor_of_block(const Table& table, int block) {
  int lo = 0, hi = table.count - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (table.block_start[mid] <= block)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

template <class T>
__global__ void __launch_bounds__(kAdamThreads)
    adamw_kernel(const __grid_constant__ TensorTable<T> table, AdamWScalars s) {
  const int ti = tensor_of_block(table, blockIdx.x);
  const int64_t begin = static_cast<int64_t>(blockIdx.x - table.block_start[ti]) * kChunk;
  const int64_t end = min(table.numel[ti], begin + kChunk);
  T* param = table.param[ti];
  const T* grad = table.grad[ti];
  float* m = table.exp_avg[ti];
  float* v = table.exp_avg_sq[ti];
  const bool decay = table.decay[ti] != 0;
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    const float g = to_acc(grad[i]) * s.grad_scale;
    float p = to_acc(param[i]);
    if (decay) p *= s.decay_factor;
    const float mi = s.beta1 * m[i] + s.one_minus_beta1 * g;
    const float vi = s.beta2 * v[i] + s.one_minus_beta2 * g * g;
    m[i] = mi;
    v[i] = vi;
    p -= s.step_size * mi / (sqrtf(vi) * s.inv_sqrt_bc2 + s.eps);
    param[i] = from_acc<T>(p);
  }
}

template <class T>
__global__ void __launch_bounds__(kAdamThreads)
    squared_norm_kernel(const __grid_constant__ TensorTable<T> table,
                        double* __restrict__ partial) {
  __shared__ double scratch[32];
  const int ti = tensor_of_block(table, blockIdx.x);
  const int64_t begin = static_cast<int64_t>(blockIdx.x - table.block_start[ti]) * kChunk;
  const int64_t end = min(table.numel[ti], begin + kChunk);
  const T* grad = table.grad[ti];
  double acc = 0.0;
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    const double g = to_acc(grad[i]);
    acc += g * g;
  }
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

__global__ void sum_partials_kernel(const double* __restrict__ partial, int64_t n,
                                    double* __restrict__ total, bool accumulate) {
  __shared__ double scratch[32];
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc += partial[i];
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) *total = accumulate ? *total + acc : acc;
}

__global__ void double_to_float_kernel(const double* __restrict__ src, float* __restrict__ dst) {
  *dst = static_cast<float>(*src);
}

// Splits `count` tensors into launches of at most kMaxTensors and calls launch(table, blocks).
template <class T, class Fill, class Launch>
void for_each_table(int64_t count, Fill&& fill, Launch&& launch) {
  for (int64_t first = 0; first < count; first += kMaxTensors) {
    auto table = std::make_unique<TensorTable<T>>();
    const int n = static_cast<int>(std::min<int64_t>(kMaxTensors, count - first));
    table->count = 0;
    int64_t blocks = 0;
    for (int i = 0; i < n; ++i) {
      const int64_t numel = fill(*table, table->count, first + i);
      if (numel <= 0) continue;  // empty tensors take no block
      table->numel[table->count] = numel;
      table->block_start[table->count] = static_cast<int32_t>(blocks);
      blocks += ceil_div(numel, kChunk);
      MENTOR_CHECK(blocks <= 0x7fffffff, "multi-tensor launch: too many blocks");
      ++table->count;
    }
    table->block_start[table->count] = static_cast<int32_t>(blocks);
    if (table->count > 0) launch(*table, blocks);
  }
}

}  // namespace

// ---- AdamW launchers --------------------------------------------------------------------------
template <class T>
void adamw_multi_tensor(const std::vector<AdamWTensor<T>>& tensors, const AdamWHyper& hyper) {
  using DT = device_t<T>;
  MENTOR_CHECK(hyper.step >= 1, "adamw_multi_tensor: step must start at 1, got ", hyper.step);
  AdamWScalars s{};
  s.beta1 = hyper.beta1;
  s.beta2 = hyper.beta2;
  s.one_minus_beta1 = 1.0f - hyper.beta1;
  s.one_minus_beta2 = 1.0f - hyper.beta2;
  s.eps = hyper.eps;
  s.decay_factor = static_cast<float>(1.0 - static_cast<double>(hyper.lr) * hyper.weight_decay);
  const double bc1 =
      1.0 - std::pow(static_cast<double>(hyper.beta1), static_cast<double>(hyper.step));
  const double bc2 =
      1.0 - std::pow(static_cast<double>(hyper.beta2), static_cast<double>(hyper.step));
  s.step_size = static_cast<float>(static_cast<double>(hyper.lr) / bc1);
  s.inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(bc2));
  s.grad_scale = hyper.grad_scale;
  for_each_table<DT>(
      static_cast<int64_t>(tensors.size()),
      [&](TensorTable<DT>& table, int slot, int64_t index) {
        const AdamWTensor<T>& t = tensors[static_cast<size_t>(index)];
        if (t.numel <= 0) return int64_t{0};
        MENTOR_CHECK(t.param && t.grad && t.exp_avg && t.exp_avg_sq, "adamw_multi_tensor: tensor ",
                     index, " has a null pointer");
        table.param[slot] = device_ptr(t.param);
        table.grad[slot] = device_ptr(t.grad);
        table.exp_avg[slot] = t.exp_avg;
        table.exp_avg_sq[slot] = t.exp_avg_sq;
        table.decay[slot] = t.weight_decay ? 1 : 0;
        return t.numel;
      },
      [&](const TensorTable<DT>& table, int64_t blocks) {
        adamw_kernel<DT><<<static_cast<unsigned>(blocks), kAdamThreads, 0, stream()>>>(table, s);
        MENTOR_CUDA_CHECK_LAUNCH("adamw_kernel");
      });
}

template <class T>
void squared_norm_multi_tensor(const std::vector<const T*>& grads,
                               const std::vector<int64_t>& numels, float* out) {
  using DT = device_t<T>;
  MENTOR_CHECK(grads.size() == numels.size(), "squared_norm_multi_tensor: ", grads.size(),
               " pointers for ", numels.size(), " sizes");
  Scratch total(sizeof(double));
  MENTOR_CUDA_CHECK(cudaMemsetAsync(total.as<double>(), 0, sizeof(double), stream()));
  for_each_table<DT>(
      static_cast<int64_t>(grads.size()),
      [&](TensorTable<DT>& table, int slot, int64_t index) {
        const int64_t numel = numels[static_cast<size_t>(index)];
        if (numel <= 0) return int64_t{0};
        table.grad[slot] = device_ptr(grads[static_cast<size_t>(index)]);
        return numel;
      },
      [&](const TensorTable<DT>& table, int64_t blocks) {
        Scratch partial(sizeof(double) * static_cast<size_t>(blocks));
        squared_norm_kernel<DT><<<static_cast<unsigned>(blocks), kAdamThreads, 0, stream()>>>(
            table, partial.as<double>());
        MENTOR_CUDA_CHECK_LAUNCH("squared_norm_kernel");
        sum_partials_kernel<<<1, 1024, 0, stream()>>>(partial.as<double>(), blocks,
                                                      total.as<double>(), true);
        MENTOR_CUDA_CHECK_LAUNCH("sum_partials_kernel");
      });
  double_to_float_kernel<<<1, 1, 0, stream()>>>(total.as<double>(), out);
  MENTOR_CUDA_CHECK_LAUNCH("double_to_float_kernel");
}

#define MENTOR_INSTANTIATE_FUSED(T)                                                           \
  template void adamw_multi_tensor<T>(const std::vector<AdamWTensor<T>>&, const AdamWHyper&); \
  template void squared_norm_multi_tensor<T>(const std::vector<const T*>&,                    \
                                             const std::vector<int64_t>&, float*);
MENTOR_INSTANTIATE_FUSED(float)
MENTOR_INSTANTIATE_FUSED(bf16)

}  // namespace mentor::cuda
