#pragma once
// Streams, events and device queries of the CUDA backend, as plain C++ (no CUDA header): handles
// are opaque pointers (a cudaStream_t / cudaEvent_t), so host code compiled by g++ (tests,
// benchmarks, the training loop) can use them. Defined in src/cuda/runtime.cu.
//
// Every kernel and copy of the backend runs on the calling thread's *current stream*: the legacy
// default stream unless a StreamGuard selected another one. The caching allocator is stream-ordered
// on that stream (see allocator.hpp), so work on one stream never needs a synchronisation to reuse
// memory; memory handed between streams must be ordered by the caller (Stream::wait).
#include <cstddef>
#include <cstdint>
#include <string>

namespace mentor::cuda {

using StreamHandle = void*;  // cudaStream_t; nullptr is the legacy default stream

// The stream this thread's kernels, copies and allocations go to.
StreamHandle current_stream();
void set_current_stream(StreamHandle stream);

class Event;

// An owned CUDA stream (non-blocking: it does not synchronise with the legacy default stream).
class Stream {
 public:
  explicit Stream(bool non_blocking = true);
  ~Stream();
  Stream(Stream&& other) noexcept;
  Stream& operator=(Stream&& other) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  StreamHandle handle() const { return handle_; }
  void synchronize() const;
  // Later work on this stream waits for everything recorded in `event`.
  void wait(const Event& event) const;
  // Later work on this stream waits for everything queued so far on `other`.
  void wait(StreamHandle other) const;

 private:
  StreamHandle handle_ = nullptr;
};

// Makes `stream` this thread's current stream for the guard's lifetime.
class StreamGuard {
 public:
  explicit StreamGuard(StreamHandle stream);
  explicit StreamGuard(const Stream& stream) : StreamGuard(stream.handle()) {}
  ~StreamGuard();
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  StreamHandle previous_;
};

// An owned CUDA event; with timing enabled two of them measure GPU time between their records.
class Event {
 public:
  explicit Event(bool enable_timing = false);
  ~Event();
  Event(Event&& other) noexcept;
  Event& operator=(Event&& other) noexcept;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  void* handle() const { return handle_; }  // cudaEvent_t
  void record(StreamHandle stream);
  void record() { record(current_stream()); }
  void synchronize() const;
  bool query() const;  // true once all recorded work completed
  // Milliseconds from `start` to this event (both recorded, this one completed).
  float elapsed_ms_since(const Event& start) const;

 private:
  void* handle_ = nullptr;
};

void synchronize_stream(StreamHandle stream);

// ---- device queries ----------------------------------------------------------------------------
struct DeviceInfo {
  std::string name;
  int compute_capability_major = 0;
  int compute_capability_minor = 0;
  int multiprocessors = 0;
  size_t total_memory = 0;
};
DeviceInfo device_info();  // of the current device; throws when none is present

struct MemoryInfo {
  size_t free_bytes = 0;
  size_t total_bytes = 0;
};
MemoryInfo memory_info();  // cudaMemGetInfo

}  // namespace mentor::cuda
