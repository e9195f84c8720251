#pragma once
// The handful of device primitives the tensor core is built on (allocate, fill, strided copy and
// accumulate, element conversion, host transfer, Philox fills), one specialisation per device
// (CPU, CUDA and the shape-only device).
// The CUDA side forwards to the mentor_cuda library; a CPU-only build never includes a CUDA header
// and reports a clear error when a CUDA tensor is used.
#include <cstring>
#include <memory>

#include "mentor/core/device.hpp"
#include "mentor/core/dtype.hpp"
#include "mentor/core/random.hpp"
#include "mentor/core/shape.hpp"
#include "mentor/core/storage.hpp"
#include "mentor/core/strided.hpp"
#if defined(MENTOR_WITH_CUDA)
#include "mentor/core/cuda_api.hpp"
#endif

namespace mentor::detail {

template <class D>
struct DeviceOps;

template <>
struct DeviceOps<CPU> {
  static std::shared_ptr<Storage> allocate(size_t bytes) {
    Allocator& allocator = HostAllocator::instance();
    return std::make_shared<Storage>(allocator.allocate(bytes), bytes, &allocator);
  }
  template <class T>
  static void fill(T* dst, int64_t n, T value) {
    for (int64_t i = 0; i < n; ++i) dst[i] = value;
  }
  template <class T>
  static void copy_strided(const T* src, const Strides& ss, T* dst, const Strides& ds,
                           const Shape& shape) {
    cpu::copy_strided(src, ss, dst, ds, shape);
  }
  template <class T>
  static void add_strided(const T* src, const Strides& ss, T* dst, const Strides& ds,
                          const Shape& shape) {
    cpu::add_strided(src, ss, dst, ds, shape);
  }
  template <class To, class From>
  static void convert(const From* src, To* dst, int64_t n) {
    for (int64_t i = 0; i < n; ++i) dst[i] = convert_element<To>(src[i]);
  }
  static void to_host(void* dst, const void* src, size_t bytes) {
    if (bytes) std::memcpy(dst, src, bytes);
  }
  static void from_host(void* dst, const void* src, size_t bytes) {
    if (bytes) std::memcpy(dst, src, bytes);
  }
  template <class T>
  static void uniform(T* dst, int64_t n, uint64_t seed, uint64_t offset, float low, float high) {
    for (int64_t i = 0; i < n; ++i)
      dst[i] = convert_element<T>(low + (high - low) * philox_uniform_at(seed, offset, i));
  }
  template <class T>
  static void normal(T* dst, int64_t n, uint64_t seed, uint64_t offset, float mean, float std) {
    for (int64_t i = 0; i < n; ++i)
      dst[i] = convert_element<T>(mean + std * philox_normal_at(seed, offset, i));
  }
};

// The shape-only device holds no values: storage without memory, writes dropped, reads an error.
template <>
struct DeviceOps<ShapeOnly> {
  static std::shared_ptr<Storage> allocate(size_t bytes) {
    return std::make_shared<Storage>(nullptr, bytes, nullptr);
  }
  template <class T>
  static void fill(T*, int64_t, T) {}
  template <class T>
  static void copy_strided(const T*, const Strides&, T*, const Strides&, const Shape&) {}
  template <class T>
  static void add_strided(const T*, const Strides&, T*, const Strides&, const Shape&) {}
  template <class To, class From>
  static void convert(const From*, To*, int64_t) {}
  static void to_host(void*, const void*, size_t) {
    throw Error("a shape-only tensor holds no values to read");
  }
  static void from_host(void*, const void*, size_t) {}
  template <class T>
  static void uniform(T*, int64_t, uint64_t, uint64_t, float, float) {}
  template <class T>
  static void normal(T*, int64_t, uint64_t, uint64_t, float, float) {}
};

#if defined(MENTOR_WITH_CUDA)
template <>
struct DeviceOps<CUDA> {
  static std::shared_ptr<Storage> allocate(size_t bytes) {
    Allocator& allocator = cuda::device_allocator();
    return std::make_shared<Storage>(allocator.allocate(bytes), bytes, &allocator);
  }
  template <class T>
  static void fill(T* dst, int64_t n, T value) {
    cuda::fill(dst, n, value);
  }
  template <class T>
  static void copy_strided(const T* src, const Strides& ss, T* dst, const Strides& ds,
                           const Shape& shape) {
    cuda::copy_strided(src, ss, dst, ds, shape);
  }
  template <class T>
  static void add_strided(const T* src, const Strides& ss, T* dst, const Strides& ds,
                          const Shape& shape) {
    cuda::add_strided(src, ss, dst, ds, shape);
  }
  template <class To, class From>
  static void convert(const From* src, To* dst, int64_t n) {
    cuda::convert<To, From>(src, dst, n);
  }
  static void to_host(void* dst, const void* src, size_t bytes) {
    if (bytes) cuda::copy_device_to_host(dst, src, bytes);
  }
  static void from_host(void* dst, const void* src, size_t bytes) {
    if (bytes) cuda::copy_host_to_device(dst, src, bytes);
  }
  template <class T>
  static void uniform(T* dst, int64_t n, uint64_t seed, uint64_t offset, float low, float high) {
    cuda::philox_uniform(dst, n, seed, offset, low, high);
  }
  template <class T>
  static void normal(T* dst, int64_t n, uint64_t seed, uint64_t offset, float mean, float std) {
    cuda::philox_normal(dst, n, seed, offset, mean, std);
  }
};
#else
// Without the CUDA backend the type Tensor<T, CUDA> exists but every use of its storage throws.
template <>
struct DeviceOps<CUDA> {
  [[noreturn]] static void unavailable() {
    throw Error(
        "mentor was built without the CUDA backend (configure with nvcc and cuDNN present)");
  }
  static std::shared_ptr<Storage> allocate(size_t) { unavailable(); }
  template <class T>
  static void fill(T*, int64_t, T) {
    unavailable();
  }
  template <class T>
  static void copy_strided(const T*, const Strides&, T*, const Strides&, const Shape&) {
    unavailable();
  }
  template <class T>
  static void add_strided(const T*, const Strides&, T*, const Strides&, const Shape&) {
    unavailable();
  }
  template <class To, class From>
  static void convert(const From*, To*, int64_t) {
    unavailable();
  }
  static void to_host(void*, const void*, size_t) { unavailable(); }
  static void from_host(void*, const void*, size_t) { unavailable(); }
  template <class T>
  static void uniform(T*, int64_t, uint64_t, uint64_t, float, float) {
    unavailable();
  }
  template <class T>
  static void normal(T*, int64_t, uint64_t, uint64_t, float, float) {
    unavailable();
  }
};
#endif

}  // namespace mentor::detail
