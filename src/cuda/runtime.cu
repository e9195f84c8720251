// The CUDA device runtime: the caching stream-ordered allocator, host/device copies, streams,
// events, graphs and device queries (api.hpp, allocator.hpp, stream.hpp, graph.hpp).
#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "mentor/backend/cuda/allocator.hpp"
#include "mentor/backend/cuda/check.hpp"
#include "mentor/backend/cuda/graph.hpp"
#include "mentor/backend/cuda/kernels/common.cuh"
#include "mentor/backend/cuda/stream.hpp"
#include "mentor/core/cuda_api.hpp"

namespace mentor::cuda {

// ---- current stream
// ------------------------------------------------------------------------------
namespace {
thread_local StreamHandle t_current_stream = nullptr;
}  // namespace

StreamHandle current_stream() { return t_current_stream; }
void set_current_stream(StreamHandle stream) { t_current_stream = stream; }

namespace detail {

bool sync_after_launch() {
  static const bool enabled = [] {
    const char* value = std::getenv("MENTOR_CUDA_SYNC_DEBUG");
    return value != nullptr && value[0] != '\0' && std::strcmp(value, "0") != 0;
  }();
  return enabled;
}

void check_launch(const char* kernel, const char* file, int line) {
  cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) [[unlikely]] {
    throw_library_error("CUDA", kernel, static_cast<int>(status), cudaGetErrorName(status),
                        cudaGetErrorString(status), file, line);
  }
  if (sync_after_launch()) {
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    check_cuda(cudaStreamIsCapturing(stream(), &capture), "cudaStreamIsCapturing", file, line);
    if (capture == cudaStreamCaptureStatusNone) {
      status = cudaStreamSynchronize(stream());
      if (status != cudaSuccess) {
        (void)cudaGetLastError();
        throw_library_error("CUDA", kernel, static_cast<int>(status), cudaGetErrorName(status),
                            cudaGetErrorString(status), file, line);
      }
    }
  }
}

}  // namespace detail

int multiprocessor_count() {
  thread_local int count = [] {
    int device = 0, value = 0;
    MENTOR_CUDA_CHECK(cudaGetDevice(&device));
    MENTOR_CUDA_CHECK(cudaDeviceGetAttribute(&value, cudaDevAttrMultiProcessorCount, device));
    return value;
  }();
  return count;
}

// ---- the caching allocator
// -----------------------------------------------------------------------
namespace {

constexpr size_t kSmallLimit = size_t{1} << 20;  // 1 MiB
constexpr size_t kSmallStep = 512;

size_t round_up(size_t value, size_t step) { return (value + step - 1) / step * step; }

size_t size_class_of(size_t bytes) {
  if (bytes <= kSmallLimit) return round_up(bytes, kSmallStep);
  int log2 = 63 - __builtin_clzll(static_cast<unsigned long long>(bytes));
  return round_up(bytes, size_t{1} << (log2 - 3));  // eight classes per power of two
}

std::string format_bytes(size_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024.0 && unit < 4) {
    value /= 1024.0;
    ++unit;
  }
  char text[64];
  std::snprintf(text, sizeof(text), "%.2f %s", value, units[unit]);
  return text;
}

class CachingAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override {
    if (bytes == 0) return nullptr;
    const size_t size = size_class_of(bytes);
    const StreamHandle stream = current_stream();
    std::lock_guard<std::mutex> lock(mutex_);
    const uint64_t pool = pool_of_stream(stream);
    ++stats_.allocations;
    auto it = free_.find(Key{pool, stream, size});
    if (it != free_.end() && !it->second.empty()) {
      void* ptr = it->second.back();
      it->second.pop_back();
      if (it->second.empty()) free_.erase(it);
      stats_.cached_bytes -= size;
      ++stats_.cache_hits;
      hand_out(ptr, Block{size, stream, pool});
      return ptr;
    }
    void* ptr = nullptr;
    cudaError_t status = cudaMalloc(&ptr, size);
    // Retry after freeing the cache, except while a stream is being captured: cudaFree
    // synchronises the device, which a capture in progress does not survive.
    if (status == cudaErrorMemoryAllocation && capturing_.empty()) {
      (void)cudaGetLastError();
      ++stats_.oom_retries;
      release_cached_locked();
      status = cudaMalloc(&ptr, size);
    }
    if (status == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      size_t free_bytes = 0, total_bytes = 0;
      if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) (void)cudaGetLastError();
      throw OutOfMemoryError(mentor::detail::concat(
          "CUDA out of memory: tried to allocate ", bytes, " bytes (", format_bytes(bytes),
          ", size class ", size, "); the device has ", free_bytes, " bytes (",
          format_bytes(free_bytes), ") free of ", total_bytes, " (", format_bytes(total_bytes),
          "); mentor's tensors hold ", stats_.allocated_bytes, " bytes (",
          format_bytes(stats_.allocated_bytes), ") and its cache ", stats_.cached_bytes, " bytes"));
    }
    detail::check_cuda(status, "cudaMalloc(&ptr, size)", __FILE__, __LINE__);
    ++stats_.device_mallocs;
    stats_.reserved_bytes += size;
    if (stats_.reserved_bytes > stats_.peak_reserved_bytes)
      stats_.peak_reserved_bytes = stats_.reserved_bytes;
    hand_out(ptr, Block{size, stream, pool});
    return ptr;
  }

  // Never throws: called from Storage destructors (including at program exit, when the CUDA
  // runtime may already be gone; the block is only put back in the cache then).
  void deallocate(void* ptr, size_t) override {
    if (ptr == nullptr) return;
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = live_.find(ptr);
    if (it == live_.end()) return;  // not ours: nothing sane to do in a destructor
    Block block = it->second;
    live_.erase(it);
    uint64_t pool = alive_pools_.count(block.pool) ? block.pool : 0;
    free_[Key{pool, block.stream, block.size}].push_back(ptr);
    stats_.allocated_bytes -= block.size;
    stats_.cached_bytes += block.size;
  }

  AllocatorStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }
  void reset_peaks() {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.peak_allocated_bytes = stats_.allocated_bytes;
    stats_.peak_reserved_bytes = stats_.reserved_bytes;
  }
  void empty() {
    std::lock_guard<std::mutex> lock(mutex_);
    release_cached_locked();
  }

  // Graph pools.
  uint64_t create_pool() {
    std::lock_guard<std::mutex> lock(mutex_);
    uint64_t id = ++last_pool_;
    alive_pools_.insert(id);
    return id;
  }
  void begin_capture(StreamHandle stream, uint64_t pool) {
    std::lock_guard<std::mutex> lock(mutex_);
    capturing_[stream] = pool;
  }
  void end_capture(StreamHandle stream) {
    std::lock_guard<std::mutex> lock(mutex_);
    capturing_.erase(stream);
  }
  // The graph is gone: its cached blocks join the general cache; its live blocks will when freed.
  void release_pool(uint64_t pool) {
    std::lock_guard<std::mutex> lock(mutex_);
    alive_pools_.erase(pool);
    for (auto it = free_.begin(); it != free_.end();) {
      if (it->first.pool == pool) {
        auto& target = free_[Key{0, it->first.stream, it->first.size}];
        target.insert(target.end(), it->second.begin(), it->second.end());
        it = free_.erase(it);
      } else {
        ++it;
      }
    }
  }
  // A stream is being destroyed (after synchronising it): its blocks become default-stream blocks.
  void retire_stream(StreamHandle stream) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& entry : live_) {
      if (entry.second.stream == stream) entry.second.stream = nullptr;
    }
    for (auto it = free_.begin(); it != free_.end();) {
      if (it->first.stream == stream) {
        auto& target = free_[Key{it->first.pool, nullptr, it->first.size}];
        target.insert(target.end(), it->second.begin(), it->second.end());
        it = free_.erase(it);
      } else {
        ++it;
      }
    }
  }

 private:
  struct Block {
    size_t size;
    StreamHandle stream;
    uint64_t pool;
  };
  struct Key {
    uint64_t pool;
    StreamHandle stream;
    size_t size;
    bool operator<(const Key& other) const {
      return std::tie(pool, stream, size) < std::tie(other.pool, other.stream, other.size);
    }
  };

  uint64_t pool_of_stream(StreamHandle stream) const {
    auto it = capturing_.find(stream);
    return it == capturing_.end() ? 0 : it->second;
  }

  void hand_out(void* ptr, const Block& block) {
    live_[ptr] = block;
    stats_.allocated_bytes += block.size;
    if (stats_.allocated_bytes > stats_.peak_allocated_bytes)
      stats_.peak_allocated_bytes = stats_.allocated_bytes;
  }

  // Frees the general pool's cached blocks only. A live graph's cached blocks stay: its
  // instantiated kernels hold their addresses, and the next replay writes into them (they join
  // the general pool in release_pool when the graph goes). cudaFree synchronises the device, so
  // no queued kernel can still be using a freed block.
  void release_cached_locked() {
    for (auto it = free_.begin(); it != free_.end();) {
      if (it->first.pool != 0 && alive_pools_.count(it->first.pool)) {
        ++it;
        continue;
      }
      for (void* ptr : it->second) {
        MENTOR_CUDA_CHECK(cudaFree(ptr));
        ++stats_.device_frees;
        stats_.reserved_bytes -= it->first.size;
        stats_.cached_bytes -= it->first.size;
      }
      it = free_.erase(it);
    }
  }

  std::mutex mutex_;
  std::map<Key, std::vector<void*>> free_;
  std::unordered_map<void*, Block> live_;
  std::unordered_map<StreamHandle, uint64_t> capturing_;
  std::unordered_set<uint64_t> alive_pools_;
  uint64_t last_pool_ = 0;
  AllocatorStats stats_;
};

CachingAllocator& caching_allocator() {
  // Leaked on purpose: tensors with static storage duration may be freed after main returns.
  static CachingAllocator* allocator = new CachingAllocator();
  return *allocator;
}

}  // namespace

Allocator& device_allocator() { return caching_allocator(); }
AllocatorStats allocator_stats() { return caching_allocator().stats(); }
void reset_peak_stats() { caching_allocator().reset_peaks(); }
void empty_cache() { caching_allocator().empty(); }
size_t allocation_size_class(size_t bytes) { return bytes == 0 ? 0 : size_class_of(bytes); }

// ---- copies and synchronisation ----------------------------------------------------------------
// Host memory is pageable (or borrowed); the copy to the device is complete, and the host buffer
// free to reuse, when the call returns.
void copy_host_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  MENTOR_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream()));
  MENTOR_CUDA_CHECK(cudaStreamSynchronize(stream()));
}

void copy_device_to_host(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  MENTOR_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream()));
  MENTOR_CUDA_CHECK(cudaStreamSynchronize(stream()));
}

void copy_device_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  MENTOR_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream()));
}

void synchronize() { MENTOR_CUDA_CHECK(cudaDeviceSynchronize()); }

bool stream_capturing() {
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  MENTOR_CUDA_CHECK(cudaStreamIsCapturing(stream(), &capture));
  return capture != cudaStreamCaptureStatusNone;
}

bool device_available() {
  static const bool available = [] {
    int count = 0;
    cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
    return count > 0;
  }();
  return available;
}

// ---- streams and events
// --------------------------------------------------------------------------
Stream::Stream(bool non_blocking) {
  cudaStream_t handle = nullptr;
  MENTOR_CUDA_CHECK(
      cudaStreamCreateWithFlags(&handle, non_blocking ? cudaStreamNonBlocking : cudaStreamDefault));
  handle_ = handle;
}

Stream::~Stream() {
  if (handle_ == nullptr) return;
  // Finish the stream's work before its cached memory is handed to the default stream.
  if (cudaStreamSynchronize(static_cast<cudaStream_t>(handle_)) != cudaSuccess)
    (void)cudaGetLastError();
  caching_allocator().retire_stream(handle_);
  if (t_current_stream == handle_) t_current_stream = nullptr;
  if (cudaStreamDestroy(static_cast<cudaStream_t>(handle_)) != cudaSuccess)
    (void)cudaGetLastError();
}

Stream::Stream(Stream&& other) noexcept : handle_(other.handle_) { other.handle_ = nullptr; }
Stream& Stream::operator=(Stream&& other) noexcept {
  if (this != &other) {
    Stream dying(std::move(*this));
    handle_ = other.handle_;
    other.handle_ = nullptr;
  }
  return *this;
}

void Stream::synchronize() const {
  MENTOR_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(handle_)));
}
void Stream::wait(const Event& event) const {
  MENTOR_CUDA_CHECK(cudaStreamWaitEvent(static_cast<cudaStream_t>(handle_),
                                        static_cast<cudaEvent_t>(event.handle()), 0));
}
void Stream::wait(StreamHandle other) const {
  Event marker;
  marker.record(other);
  wait(marker);
}

void synchronize_stream(StreamHandle handle) {
  MENTOR_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(handle)));
}

StreamGuard::StreamGuard(StreamHandle handle) : previous_(t_current_stream) {
  t_current_stream = handle;
}
StreamGuard::~StreamGuard() { t_current_stream = previous_; }

Event::Event(bool enable_timing) {
  cudaEvent_t handle = nullptr;
  MENTOR_CUDA_CHECK(
      cudaEventCreateWithFlags(&handle, enable_timing ? cudaEventDefault : cudaEventDisableTiming));
  handle_ = handle;
}
Event::~Event() {
  if (handle_ != nullptr && cudaEventDestroy(static_cast<cudaEvent_t>(handle_)) != cudaSuccess)
    (void)cudaGetLastError();
}
Event::Event(Event&& other) noexcept : handle_(other.handle_) { other.handle_ = nullptr; }
Event& Event::operator=(Event&& other) noexcept {
  if (this != &other) {
    Event dying(std::move(*this));
    handle_ = other.handle_;
    other.handle_ = nullptr;
  }
  return *this;
}
void Event::record(StreamHandle handle) {
  MENTOR_CUDA_CHECK(
      cudaEventRecord(static_cast<cudaEvent_t>(handle_), static_cast<cudaStream_t>(handle)));
}
void Event::synchronize() const {
  MENTOR_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(handle_)));
}
bool Event::query() const {
  cudaError_t status = cudaEventQuery(static_cast<cudaEvent_t>(handle_));
  if (status == cudaErrorNotReady) {
    (void)cudaGetLastError();
    return false;
  }
  MENTOR_CUDA_CHECK(status);
  return true;
}
float Event::elapsed_ms_since(const Event& start) const {
  float ms = 0.f;
  MENTOR_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start.handle_),
                                         static_cast<cudaEvent_t>(handle_)));
  return ms;
}

// ---- device queries
// ------------------------------------------------------------------------------
DeviceInfo device_info() {
  int device = 0;
  MENTOR_CUDA_CHECK(cudaGetDevice(&device));
  cudaDeviceProp props{};
  MENTOR_CUDA_CHECK(cudaGetDeviceProperties(&props, device));
  DeviceInfo info;
  info.name = props.name;
  info.compute_capability_major = props.major;
  info.compute_capability_minor = props.minor;
  info.multiprocessors = props.multiProcessorCount;
  info.total_memory = props.totalGlobalMem;
  return info;
}

MemoryInfo memory_info() {
  MemoryInfo info;
  MENTOR_CUDA_CHECK(cudaMemGetInfo(&info.free_bytes, &info.total_bytes));
  return info;
}

// ---- graphs
// --------------------------------------------------------------------------------------
Graph::Graph() = default;
Graph::~Graph() {
  try {
    if (capturing_) abort_capture();
  } catch (...) {
  }
  // Replays may still be running on any stream; the pool's memory must outlive them.
  if (exec_ != nullptr && cudaDeviceSynchronize() != cudaSuccess) (void)cudaGetLastError();
  reset();
  if (pool_id_ != 0) caching_allocator().release_pool(pool_id_);
}

void Graph::reset() {
  if (exec_ != nullptr && cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_)) != cudaSuccess)
    (void)cudaGetLastError();
  if (graph_ != nullptr && cudaGraphDestroy(static_cast<cudaGraph_t>(graph_)) != cudaSuccess)
    (void)cudaGetLastError();
  exec_ = nullptr;
  graph_ = nullptr;
}

void Graph::capture_begin(const Stream& on) {
  MENTOR_CHECK(!capturing_, "cuda::Graph: capture_begin called while already capturing");
  MENTOR_CHECK(on.handle() != nullptr,
               "cuda::Graph: cannot capture the legacy default stream; use a cuda::Stream");
  reset();  // a second capture replaces the first graph (its pool is reused)
  if (pool_id_ == 0) pool_id_ = caching_allocator().create_pool();
  capture_stream_ = on.handle();
  // Relaxed mode: the allocator may call cudaMalloc while this thread captures.
  MENTOR_CUDA_CHECK(cudaStreamBeginCapture(static_cast<cudaStream_t>(capture_stream_),
                                           cudaStreamCaptureModeRelaxed));
  caching_allocator().begin_capture(capture_stream_, pool_id_);
  previous_stream_ = t_current_stream;
  t_current_stream = capture_stream_;
  capturing_ = true;
}

void Graph::capture_end() {
  MENTOR_CHECK(capturing_, "cuda::Graph: capture_end without capture_begin");
  capturing_ = false;
  t_current_stream = previous_stream_;
  caching_allocator().end_capture(capture_stream_);
  cudaGraph_t graph = nullptr;
  MENTOR_CUDA_CHECK(cudaStreamEndCapture(static_cast<cudaStream_t>(capture_stream_), &graph));
  graph_ = graph;
  cudaGraphExec_t exec = nullptr;
  MENTOR_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  exec_ = exec;
}

void Graph::abort_capture() {
  if (!capturing_) return;
  capturing_ = false;
  t_current_stream = previous_stream_;
  caching_allocator().end_capture(capture_stream_);
  cudaGraph_t graph = nullptr;
  // The capture may already be invalidated by the failure; either way it is discarded.
  if (cudaStreamEndCapture(static_cast<cudaStream_t>(capture_stream_), &graph) != cudaSuccess)
    (void)cudaGetLastError();
  if (graph != nullptr) (void)cudaGraphDestroy(graph);
}

void Graph::replay(StreamHandle on) {
  MENTOR_CHECK(exec_ != nullptr, "cuda::Graph: replay before a successful capture");
  MENTOR_CUDA_CHECK(
      cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), static_cast<cudaStream_t>(on)));
}
void Graph::replay() { replay(capture_stream_); }

}  // namespace mentor::cuda
