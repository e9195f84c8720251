#pragma once
// Reference-counted storage behind an allocator interface. A tensor shares its Storage with all of
// its views; the bytes go back to the allocator when the last one lets go.
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>

#include "mentor/core/device.hpp"
#include "mentor/core/error.hpp"

namespace mentor {

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* ptr, size_t bytes) = 0;
};

// 64-byte aligned host memory (one cache line, a full AVX-512 register).
class HostAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override {
    if (bytes == 0) return nullptr;
    size_t rounded = (bytes + 63) / 64 * 64;
    void* ptr = std::aligned_alloc(64, rounded);
    if (!ptr) throw OutOfMemoryError(detail::concat("host allocation of ", bytes, " bytes failed"));
    return ptr;
  }
  void deallocate(void* ptr, size_t) override { std::free(ptr); }
  static HostAllocator& instance() {
    static HostAllocator allocator;
    return allocator;
  }
};

struct Storage {
  void* data = nullptr;
  size_t bytes = 0;
  Allocator* allocator = nullptr;  // null for borrowed memory (not freed)
  std::shared_ptr<void> keep_alive;  // owner of borrowed memory (e.g. a memory-mapped file)

  Storage(void* data_ptr, size_t size, Allocator* owner) : data(data_ptr), bytes(size), allocator(owner) {}
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  ~Storage() {
    if (allocator && data) allocator->deallocate(data, bytes);
  }
};

}  // namespace mentor
