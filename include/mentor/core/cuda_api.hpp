#pragma once
// The host-visible surface of the CUDA backend: plain C++ declarations (no CUDA header), defined in
// the mentor_cuda library (src/cuda/*.cu). Host code (compiled by g++) calls these; only the .cu
// files see CUDA. Streams are passed as opaque pointers (cudaStream_t); null = the current stream.
#include <cstddef>
#include <cstdint>

#include "mentor/core/shape.hpp"
#include "mentor/core/storage.hpp"

namespace mentor::cuda {

// The caching, stream-ordered device allocator used by Tensor<T, CUDA>.
Allocator& device_allocator();

void copy_host_to_device(void* dst, const void* src, size_t bytes);
void copy_device_to_host(void* dst, const void* src, size_t bytes);
void copy_device_to_device(void* dst, const void* src, size_t bytes);
void synchronize();
bool device_available();  // false when no GPU is present or the driver is missing
// Whether the current stream is being captured into a graph (cuda::Graph): work queued now must
// not synchronise with the host.
bool stream_capturing();

// Elementwise kernels the tensor core needs. Pointers point at the first element of each view.
template <class T>
void fill(T* dst, int64_t n, T value);
// dst[i] = src[i] over `shape`, each side with its own strides (elements).
template <class T>
void copy_strided(const T* src, const Strides& src_strides, T* dst, const Strides& dst_strides,
                  const Shape& shape);
// dst[i] += src[i] over `shape`; dst strides may be 0 (a broadcast reduction, summed in a fixed
// order: the same bits on every run on a given device).
template <class T>
void add_strided(const T* src, const Strides& src_strides, T* dst, const Strides& dst_strides,
                 const Shape& shape);
template <class To, class From>
void convert(const From* src, To* dst, int64_t n);
template <class T>
void philox_uniform(T* dst, int64_t n, uint64_t seed, uint64_t block_offset, float low, float high);
template <class T>
void philox_normal(T* dst, int64_t n, uint64_t seed, uint64_t block_offset, float mean, float std);

}  // namespace mentor::cuda
