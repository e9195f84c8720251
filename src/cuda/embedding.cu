// Launchers of ops/embedding.hpp, ops/rope.hpp and ops/dropout.hpp (float and bf16).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "mentor/backend/cuda/kernels/atomics.cuh"
#include "mentor/backend/cuda/kernels/common.cuh"
#include "mentor/backend/cuda/scratch.hpp"
#include "mentor/backend/launch/dropout.hpp"
#include "mentor/backend/launch/embedding.hpp"
#include "mentor/backend/launch/rope.hpp"
#include "mentor/core/cuda_api.hpp"
#include "mentor/core/random.hpp"

namespace mentor {

namespace cuda::kernels {
namespace {

__global__ void first_out_of_range_kernel(const int64_t* __restrict__ ids, int64_t n, int64_t upper,
                                          unsigned long long* __restrict__ first) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t id = ids[i];
    if (id < 0 || id >= upper) atomicMin(first, static_cast<unsigned long long>(i));
  }
}

// A warp per output row; W is the word copied (16 bytes when rows allow it, else T itself).
template <class W>
__global__ void embedding_forward_kernel(const W* __restrict__ table, int64_t rows,
                                         int64_t row_words, const int64_t* __restrict__ ids,
                                         int64_t n, W* __restrict__ out) {
  const int lane = threadIdx.x & 31;
  for (int64_t i = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; i < n;
       i += int64_t(gridDim.x) * (blockDim.x / 32)) {
    const int64_t id = ids[i];
    W* dst = out + i * row_words;
    if (id < 0 || id >= rows) {
      // Unchecked only inside a graph capture (see ops/embedding.hpp): never read outside the
      // table; a zero row instead.
      for (int64_t w = lane; w < row_words; w += 32) dst[w] = W{};
      continue;
    }
    const W* src = table + id * row_words;
    for (int64_t w = lane; w < row_words; w += 32) dst[w] = src[w];
  }
}

template <class T>
__global__ void embedding_backward_kernel(const T* __restrict__ g, const int64_t* __restrict__ ids,
                                          int64_t n, int64_t C, float* __restrict__ accum) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n * C;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = e / C, c = e % C;
    atomicAdd(accum + ids[i] * C + c, to_acc(g[e]));
  }
}

// One thread per rotation pair.
template <class T>
__global__ void rope_kernel(const T* __restrict__ x, const float* __restrict__ table,
                            T* __restrict__ out, int64_t pairs, int64_t S, int64_t H, int64_t half,
                            float sign) {
  for (int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; p < pairs;
       p += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = p % half, bsh = p / half;
    const int64_t s = (bsh / H) % S;
    const float c = table[(s * half + j) * 2];
    const float sn = sign * table[(s * half + j) * 2 + 1];
    const float x0 = to_acc(x[2 * p]), x1 = to_acc(x[2 * p + 1]);
    out[2 * p] = from_acc<T>(x0 * c - x1 * sn);
    out[2 * p + 1] = from_acc<T>(x1 * c + x0 * sn);
  }
}

// One thread per Philox block: four consecutive elements.
template <class T>
__global__ void dropout_kernel(const T* __restrict__ x, T* __restrict__ out, int64_t n,
                               uint64_t seed, uint64_t offset, float p, float scale) {
  const int64_t blocks = (n + 3) / 4;
  for (int64_t b = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; b < blocks;
       b += int64_t(gridDim.x) * blockDim.x) {
    const PhiloxBlock block = philox4x32_10(seed, offset + static_cast<uint64_t>(b));
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t i = 4 * b + j;
      if (i < n) {
        const bool keep = philox_uniform_word(block.word[j]) >= p;
        out[i] = from_acc<T>(keep ? to_acc(x[i]) * scale : 0.f);
      }
    }
  }
}

}  // namespace
}  // namespace cuda::kernels

int64_t cuda::first_out_of_range(const int64_t* ids, int64_t n, int64_t upper) {
  if (n <= 0) return -1;
  // Stream-ordered: memset, kernel and copy queue on the current stream; only the final stream
  // synchronisation waits (the answer is needed on the host to throw at the call).
  cuda::Scratch first_buffer(sizeof(unsigned long long));
  auto* first = first_buffer.as<unsigned long long>();
  unsigned long long host = ~0ull;
  MENTOR_CUDA_CHECK(cudaMemsetAsync(first, 0xff, sizeof(host), cuda::stream()));
  cuda::kernels::first_out_of_range_kernel<<<cuda::grid_blocks(n, 256), 256, 0, cuda::stream()>>>(
      ids, n, upper, first);
  MENTOR_CUDA_CHECK_LAUNCH("first_out_of_range_kernel");
  MENTOR_CUDA_CHECK(
      cudaMemcpyAsync(&host, first, sizeof(host), cudaMemcpyDeviceToHost, cuda::stream()));
  MENTOR_CUDA_CHECK(cudaStreamSynchronize(cuda::stream()));
  return host == ~0ull ? -1 : static_cast<int64_t>(host);
}

template <class T>
void cuda::embedding_forward(const T* table, int64_t V, int64_t C, const int64_t* ids, int64_t n,
                             T* out) {
  if (n <= 0 || C <= 0) return;
  const unsigned blocks =
      static_cast<unsigned>(std::min<int64_t>(cuda::ceil_div(n, 8), 65535LL * 32));
  const bool wide = (C * static_cast<int64_t>(sizeof(T))) % 16 == 0 &&
                    cuda::is_aligned(table, 16) && cuda::is_aligned(out, 16);
  if (wide) {
    cuda::kernels::embedding_forward_kernel<uint4><<<blocks, 256, 0, cuda::stream()>>>(
        reinterpret_cast<const uint4*>(table), V, C * static_cast<int64_t>(sizeof(T)) / 16, ids, n,
        reinterpret_cast<uint4*>(out));
  } else {
    using DT = cuda::device_t<T>;
    cuda::kernels::embedding_forward_kernel<DT><<<blocks, 256, 0, cuda::stream()>>>(
        cuda::device_ptr(table), V, C, ids, n, cuda::device_ptr(out));
  }
  MENTOR_CUDA_CHECK_LAUNCH("embedding_forward_kernel");
}

template <class T>
void cuda::embedding_backward(const T* grad_out, const int64_t* ids, int64_t n, int64_t V,
                              int64_t C, T* grad_table) {
  using DT = cuda::device_t<T>;
  if (V * C <= 0) return;
  MENTOR_CUDA_CHECK(
      cudaMemsetAsync(grad_table, 0, sizeof(T) * static_cast<size_t>(V * C), cuda::stream()));
  if (n <= 0) return;
  cuda::ScatterTarget<DT> target(cuda::device_ptr(grad_table), V * C);
  cuda::kernels::embedding_backward_kernel<DT>
      <<<cuda::grid_blocks(n * C, 256), 256, 0, cuda::stream()>>>(cuda::device_ptr(grad_out), ids,
                                                                  n, C, target.accum());
  MENTOR_CUDA_CHECK_LAUNCH("embedding_backward_kernel");
  target.finish();
}

template <class T>
void cuda::rope_apply(const T* x, const float* table, T* out, int64_t B, int64_t S, int64_t H,
                      int64_t Dh, bool inverse) {
  using DT = cuda::device_t<T>;
  const int64_t half = Dh / 2, pairs = B * S * H * half;
  if (pairs <= 0) return;
  cuda::kernels::rope_kernel<DT><<<cuda::grid_blocks(pairs, 256), 256, 0, cuda::stream()>>>(
      cuda::device_ptr(x), table, cuda::device_ptr(out), pairs, S, H, half, inverse ? -1.f : 1.f);
  MENTOR_CUDA_CHECK_LAUNCH("rope_kernel");
}

template <class T>
void cuda::dropout_apply(const T* x, T* out, int64_t n, uint64_t seed, uint64_t block_offset,
                         float p, float scale) {
  using DT = cuda::device_t<T>;
  if (n <= 0) return;
  cuda::kernels::dropout_kernel<DT>
      <<<cuda::grid_blocks(cuda::ceil_div(n, 4), 256), 256, 0, cuda::stream()>>>(
          cuda::device_ptr(x), cuda::device_ptr(out), n, seed, block_offset, p, scale);
  MENTOR_CUDA_CHECK_LAUNCH("dropout_kernel");
}

#define MENTOR_INSTANTIATE_EMBEDDING(T)                                                          \
  template void cuda::embedding_forward<T>(const T*, int64_t, int64_t, const int64_t*, int64_t,  \
                                           T*);                                                  \
  template void cuda::embedding_backward<T>(const T*, const int64_t*, int64_t, int64_t, int64_t, \
                                            T*);                                                 \
  template void cuda::rope_apply<T>(const T*, const float*, T*, int64_t, int64_t, int64_t,       \
                                    int64_t, bool);                                              \
  template void cuda::dropout_apply<T>(const T*, T*, int64_t, uint64_t, uint64_t, float, float);
MENTOR_INSTANTIATE_EMBEDDING(float)
MENTOR_INSTANTIATE_EMBEDDING(bf16)

}  // namespace mentor
