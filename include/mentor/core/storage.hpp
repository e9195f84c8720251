#pragma once
// Reference-counted storage behind an allocator interface. A tensor shares its Storage with all of
// its views; the bytes go back to the allocator when the last one lets go.
#include <atomic>
#include <bit>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <system_error>
#include <unordered_map>
#include <vector>

#include "mentor/core/device.hpp"
#include "mentor/core/error.hpp"

namespace mentor {

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* ptr, size_t bytes) = 0;
};

// 64-byte aligned host memory (one cache line, a full AVX-512 register), with a cache of freed
// blocks: a training step frees and asks again for the same buffers every step, and handing them
// back from the cache spares the system allocator's page faults and zeroing (glibc returns big
// blocks to the kernel, and taking them back costs a fault per page). Sizes are rounded up to a
// size class (whole cache lines; from 512 bytes on 8 classes per power of two, so at most 1/8 is
// wasted), and freed blocks are kept up to a cap on the bytes held (MENTOR_HOST_CACHE_MB, default
// 2048; 0 turns the cache off). Sanitizer builds never cache, so that a use after free still
// reaches freed memory. Thread-safe.
class HostAllocator final : public Allocator {
 public:
  ~HostAllocator() override { release_cached(); }

  void* allocate(size_t bytes) override {
    if (bytes == 0) return nullptr;
    const size_t rounded = size_class(bytes);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = cached_.find(rounded);
      if (it != cached_.end() && !it->second.empty()) {
        void* ptr = it->second.back();
        it->second.pop_back();
        cached_bytes_ -= rounded;
        return ptr;
      }
    }
    void* ptr = std::aligned_alloc(64, rounded);
    if (!ptr) {
      release_cached();  // the cache may hold what the system lacks
      ptr = std::aligned_alloc(64, rounded);
    }
    if (!ptr) throw OutOfMemoryError(detail::concat("host allocation of ", bytes, " bytes failed"));
    system_allocations_.fetch_add(1, std::memory_order_relaxed);
    return ptr;
  }
  void deallocate(void* ptr, size_t bytes) override {
    if (!ptr) return;
    const size_t rounded = size_class(bytes);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (cached_bytes_ + rounded <= cache_limit_) {
        cached_[rounded].push_back(ptr);
        cached_bytes_ += rounded;
        return;
      }
    }
    std::free(ptr);
  }

  // Frees every cached block.
  void release_cached() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [bytes, blocks] : cached_)
      for (void* ptr : blocks) std::free(ptr);
    cached_.clear();
    cached_bytes_ = 0;
  }
  // Blocks taken from the system so far (cache hits are not counted): what a test of a
  // steady-state loop reads before and after.
  uint64_t system_allocations() const {
    return system_allocations_.load(std::memory_order_relaxed);
  }
  size_t cache_limit() const { return cache_limit_; }
  size_t cached_bytes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return cached_bytes_;
  }

  // The bytes actually allocated for a request: a multiple of 64; from 512 on, the next of 8
  // steps per power of two.
  static size_t size_class(size_t bytes) {
    const size_t lines = (bytes + 63) / 64 * 64;
    if (lines < 512) return lines;
    const int top = std::bit_width(lines) - 1;  // 2^top <= lines < 2^(top + 1)
    const size_t step = size_t{1} << (top - 3);
    return (lines + step - 1) / step * step;
  }

  static HostAllocator& instance() {
    static HostAllocator allocator;
    return allocator;
  }

 private:
  HostAllocator() : cache_limit_(default_cache_limit()) {}

  static size_t default_cache_limit() {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    return 0;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
    return 0;
#endif
#endif
    size_t megabytes = 2048;
    if (const char* env = std::getenv("MENTOR_HOST_CACHE_MB")) {
      const char* end = env + std::strlen(env);
      const auto [last, error] = std::from_chars(env, end, megabytes);
      MENTOR_CHECK(error == std::errc() && last == end && end != env, "MENTOR_HOST_CACHE_MB: '",
                   env, "' is not a whole number of megabytes");
    }
    return megabytes << 20;
  }

  mutable std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> cached_;
  size_t cached_bytes_ = 0;
  size_t cache_limit_ = 0;
  std::atomic<uint64_t> system_allocations_{0};
};

struct Storage {
  void* data = nullptr;
  size_t bytes = 0;
  Allocator* allocator = nullptr;    // null for borrowed memory (not freed)
  std::shared_ptr<void> keep_alive;  // owner of borrowed memory (e.g. a memory-mapped file)

  Storage(void* data_ptr, size_t size, Allocator* owner)
      : data(data_ptr), bytes(size), allocator(owner) {}
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  ~Storage() {
    if (allocator && data) allocator->deallocate(data, bytes);
  }
};

}  // namespace mentor
