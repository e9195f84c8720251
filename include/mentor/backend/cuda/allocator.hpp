#pragma once
// The caching device allocator behind Tensor<T, CUDA> (cuda::device_allocator() in
// core/cuda_api.hpp): statistics and cache control, as plain C++. Defined in src/cuda/runtime.cu.
//
// How it works: requests are rounded up to a size class (multiples of 512 bytes up to 1 MiB, then
// eight classes per power of two, so at most 12.5% is wasted). A freed block goes back to a free
// list keyed by (memory pool, stream it was allocated on, size class) instead of cudaFree, and the
// next request of that class on that stream takes it without touching the driver. Reuse on the
// same stream is safe without synchronisation because the stream executes in order: the new
// owner's kernels run after the old owner's. When cudaMalloc fails the allocator frees the cached
// blocks (cudaFree synchronises the device) and retries once; if that also fails it throws
// mentor::OutOfMemoryError giving the bytes requested and the bytes free.
//
// CUDA graphs: while a stream is being captured (cuda::Graph) its allocations come from a private
// pool that belongs to the graph, so the memory a captured graph reads and writes is never handed
// to anyone else while the graph can still be replayed. empty_cache() and the out-of-memory retry
// free only the general pool's cached blocks: a live graph's cached blocks stay reserved (its
// replays write into them) and join the general pool when the graph is destroyed.
#include <cstddef>
#include <cstdint>

namespace mentor::cuda {

struct AllocatorStats {
  size_t allocated_bytes = 0;       // held by live tensors (size-class rounded)
  size_t reserved_bytes = 0;        // obtained from cudaMalloc and not yet returned
  size_t cached_bytes = 0;          // reserved but free, waiting in the cache
  size_t peak_allocated_bytes = 0;  // since start or reset_peak_stats()
  size_t peak_reserved_bytes = 0;
  uint64_t allocations = 0;     // allocate() calls with bytes > 0
  uint64_t cache_hits = 0;      // of those, served from the cache
  uint64_t device_mallocs = 0;  // cudaMalloc calls
  uint64_t device_frees = 0;    // cudaFree calls
  uint64_t oom_retries = 0;     // times a failed cudaMalloc flushed the cache and retried
};

AllocatorStats allocator_stats();
void reset_peak_stats();
// Returns the general pool's cached (free) blocks to the driver. Blocks held by tensors, and the
// cached blocks of graphs still alive, are untouched.
void empty_cache();
// The size a request of `bytes` occupies (its size class).
size_t allocation_size_class(size_t bytes);

}  // namespace mentor::cuda
