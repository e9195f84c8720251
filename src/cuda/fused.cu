// Fused kernels of fused.hpp that are not row normalisations, cross-entropy or attention:
// SwiGLU forward/backward and the multi-tensor AdamW step (plus the global gradient norm).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <memory>
#include <vector>

#include "mentor/backend/cuda/fused.hpp"
#include "mentor/backend/cuda/kernels/common.cuh"
#include "mentor/core/cuda_api.hpp"

namespace mentor::cuda {

namespace {

// ---- SwiGLU ----------------------------------------------------------------------------------
__device__ __forceinline__ float sigmoid_of(float x) { return 1.0f / (1.0f + expf(-x)); }

// Element (r, c) of `rows` rows of C; kVector: 16-byte packs (C, pitches and pointers allow it).
template <class T, bool kVector>
__global__ void swiglu_forward_kernel(const T* __restrict__ gate, int64_t gate_pitch,
                                      const T* __restrict__ up, int64_t up_pitch, T* __restrict__ y,
                                      int64_t rows, int64_t C) {
  constexpr int V = kVector ? Pack16<T>::kSize : 1;
  const int64_t per_row = C / V, total = rows * per_row;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / per_row, c = (i % per_row) * V;
    if constexpr (kVector) {
      const Pack16<T> a = load16(gate + r * gate_pitch + c), b = load16(up + r * up_pitch + c);
      Pack16<T> out;
#pragma unroll
      for (int e = 0; e < V; ++e) {
        const float x = to_acc(a.elem[e]);
        out.elem[e] = from_acc<T>(x * sigmoid_of(x) * to_acc(b.elem[e]));
      }
      store16(y + r * C + c, out);
    } else {
      const float x = to_acc(gate[r * gate_pitch + c]);
      y[r * C + c] = from_acc<T>(x * sigmoid_of(x) * to_acc(up[r * up_pitch + c]));
    }
  }
}

template <class T, bool kVector>
__global__ void swiglu_backward_kernel(const T* __restrict__ gate, int64_t gate_pitch,
                                       const T* __restrict__ up, int64_t up_pitch,
                                       const T* __restrict__ gy, T* __restrict__ g_gate,
                                       int64_t g_gate_pitch, T* __restrict__ g_up,
                                       int64_t g_up_pitch, int64_t rows, int64_t C) {
  constexpr int V = kVector ? Pack16<T>::kSize : 1;
  const int64_t per_row = C / V, total = rows * per_row;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / per_row, c = (i % per_row) * V;
    if constexpr (kVector) {
      const Pack16<T> a = load16(gate + r * gate_pitch + c), b = load16(up + r * up_pitch + c);
      const Pack16<T> g = load16(gy + r * C + c);
      Pack16<T> da, db;
#pragma unroll
      for (int e = 0; e < V; ++e) {
        const float x = to_acc(a.elem[e]), s = sigmoid_of(x), gv = to_acc(g.elem[e]);
        da.elem[e] = from_acc<T>(gv * to_acc(b.elem[e]) * s * (1.0f + x * (1.0f - s)));
        db.elem[e] = from_acc<T>(gv * x * s);
      }
      store16(g_gate + r * g_gate_pitch + c, da);
      store16(g_up + r * g_up_pitch + c, db);
    } else {
      const float x = to_acc(gate[r * gate_pitch + c]), s = sigmoid_of(x);
      const float gv = to_acc(gy[r * C + c]);
      g_gate[r * g_gate_pitch + c] =
          from_acc<T>(gv * to_acc(up[r * up_pitch + c]) * s * (1.0f + x * (1.0f - s)));
      g_up[r * g_up_pitch + c] = from_acc<T>(gv * x * s);
    }
  }
}

template <class T>
bool pack_friendly(int64_t C, std::initializer_list<int64_t> pitches,
                   std::initializer_list<const void*> pointers) {
  constexpr int V = 16 / sizeof(T);
  if (C % V != 0) return false;
  for (int64_t pitch : pitches)
    if (pitch % V != 0) return false;
  for (const void* p : pointers)
    if (!is_aligned(p, 16)) return false;
  return true;
}

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

// ---- SwiGLU launchers -------------------------------------------------------------------------
template <class T>
void swiglu_forward(const T* gate, int64_t gate_pitch, const T* up, int64_t up_pitch, T* y,
                    int64_t rows, int64_t C) {
  using DT = device_t<T>;
  if (rows <= 0 || C <= 0) return;
  if (pack_friendly<DT>(C, {gate_pitch, up_pitch}, {gate, up, y})) {
    swiglu_forward_kernel<DT, true>
        <<<grid_blocks(rows * C / Pack16<DT>::kSize, 256), 256, 0, stream()>>>(
            device_ptr(gate), gate_pitch, device_ptr(up), up_pitch, device_ptr(y), rows, C);
  } else {
    swiglu_forward_kernel<DT, false><<<grid_blocks(rows * C, 256), 256, 0, stream()>>>(
        device_ptr(gate), gate_pitch, device_ptr(up), up_pitch, device_ptr(y), rows, C);
  }
  MENTOR_CUDA_CHECK_LAUNCH("swiglu_forward_kernel");
}

template <class T>
void swiglu_backward(const T* gate, int64_t gate_pitch, const T* up, int64_t up_pitch,
                     const T* grad_y, T* grad_gate, int64_t grad_gate_pitch, T* grad_up,
                     int64_t grad_up_pitch, int64_t rows, int64_t C) {
  using DT = device_t<T>;
  if (rows <= 0 || C <= 0) return;
  if (pack_friendly<DT>(C, {gate_pitch, up_pitch, grad_gate_pitch, grad_up_pitch},
                        {gate, up, grad_y, grad_gate, grad_up})) {
    swiglu_backward_kernel<DT, true>
        <<<grid_blocks(rows * C / Pack16<DT>::kSize, 256), 256, 0, stream()>>>(
            device_ptr(gate), gate_pitch, device_ptr(up), up_pitch, device_ptr(grad_y),
            device_ptr(grad_gate), grad_gate_pitch, device_ptr(grad_up), grad_up_pitch, rows, C);
  } else {
    swiglu_backward_kernel<DT, false><<<grid_blocks(rows * C, 256), 256, 0, stream()>>>(
        device_ptr(gate), gate_pitch, device_ptr(up), up_pitch, device_ptr(grad_y),
        device_ptr(grad_gate), grad_gate_pitch, device_ptr(grad_up), grad_up_pitch, rows, C);
  }
  MENTOR_CUDA_CHECK_LAUNCH("swiglu_backward_kernel");
}

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
  Allocator& allocator = device_allocator();
  double* total = static_cast<double*>(allocator.allocate(sizeof(double)));
  MENTOR_CUDA_CHECK(cudaMemsetAsync(total, 0, sizeof(double), stream()));
  try {
    for_each_table<DT>(
        static_cast<int64_t>(grads.size()),
        [&](TensorTable<DT>& table, int slot, int64_t index) {
          const int64_t numel = numels[static_cast<size_t>(index)];
          if (numel <= 0) return int64_t{0};
          table.grad[slot] = device_ptr(grads[static_cast<size_t>(index)]);
          return numel;
        },
        [&](const TensorTable<DT>& table, int64_t blocks) {
          const size_t bytes = sizeof(double) * static_cast<size_t>(blocks);
          double* partial = static_cast<double*>(allocator.allocate(bytes));
          squared_norm_kernel<DT>
              <<<static_cast<unsigned>(blocks), kAdamThreads, 0, stream()>>>(table, partial);
          cudaError_t status = cudaGetLastError();
          if (status == cudaSuccess) {
            sum_partials_kernel<<<1, 1024, 0, stream()>>>(partial, blocks, total, true);
            status = cudaGetLastError();
          }
          allocator.deallocate(partial, bytes);
          detail::check_cuda(status, "squared_norm_kernel", __FILE__, __LINE__);
        });
    double_to_float_kernel<<<1, 1, 0, stream()>>>(total, out);
    MENTOR_CUDA_CHECK_LAUNCH("double_to_float_kernel");
  } catch (...) {
    allocator.deallocate(total, sizeof(double));
    throw;
  }
  allocator.deallocate(total, sizeof(double));
}

#define MENTOR_INSTANTIATE_FUSED(T)                                                             \
  template void swiglu_forward<T>(const T*, int64_t, const T*, int64_t, T*, int64_t, int64_t);  \
  template void swiglu_backward<T>(const T*, int64_t, const T*, int64_t, const T*, T*, int64_t, \
                                   T*, int64_t, int64_t, int64_t);                              \
  template void adamw_multi_tensor<T>(const std::vector<AdamWTensor<T>>&, const AdamWHyper&);   \
  template void squared_norm_multi_tensor<T>(const std::vector<const T*>&,                      \
                                             const std::vector<int64_t>&, float*);
MENTOR_INSTANTIATE_FUSED(float)
MENTOR_INSTANTIATE_FUSED(bf16)

}  // namespace mentor::cuda
