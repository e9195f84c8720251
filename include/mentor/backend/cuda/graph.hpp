#pragma once
// Capturing a sequence of CUDA work once and replaying it with one launch (cudaGraph), as plain
// C++. Defined in src/cuda/runtime.cu.
//
//   cuda::Stream stream;
//   cuda::Graph graph;
//   { cuda::StreamGuard on(stream); step(); }   // warm-up outside the capture (cuBLAS plans, ...)
//   graph.capture(stream, [&] { step(); });     // records, does not run
//   for (...) { update inputs in place; graph.replay(); }
//
// Rules, as for any CUDA graph: the captured work must not synchronise with the host (no item(),
// no to<CPU>()), must use the same device addresses on every replay (update inputs in place with
// copy_/fill_, read outputs from the tensors produced during capture), and every tensor it reads
// or writes must stay alive while the graph may be replayed. Allocations made during the capture
// come from a memory pool owned by the graph (see allocator.hpp), so intermediate tensors the
// capture freed are not reused by anyone else; the pool returns to the general cache when the
// Graph is destroyed.
#include <cstdint>
#include <utility>

#include "mentor/backend/cuda/stream.hpp"

namespace mentor::cuda {

class Graph {
 public:
  Graph();
  ~Graph();
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  // Begins capturing the work queued on `stream` (not the legacy default stream) and makes it
  // the current stream of this thread until capture_end().
  void capture_begin(const Stream& stream);
  void capture_end();
  // Captures whatever `work()` queues, exception-safe (a throw ends and discards the capture).
  template <class F>
  void capture(const Stream& stream, F&& work) {
    capture_begin(stream);
    try {
      std::forward<F>(work)();
    } catch (...) {
      abort_capture();
      throw;
    }
    capture_end();
  }
  // Launches the captured graph on `stream` (default: the stream it was captured on).
  void replay(StreamHandle stream);
  void replay();
  bool captured() const { return exec_ != nullptr; }
  uint64_t pool_id() const { return pool_id_; }

 private:
  void abort_capture();
  void reset();

  void* graph_ = nullptr;  // cudaGraph_t
  void* exec_ = nullptr;   // cudaGraphExec_t
  StreamHandle capture_stream_ = nullptr;
  StreamHandle previous_stream_ = nullptr;
  bool capturing_ = false;
  uint64_t pool_id_ = 0;
};

}  // namespace mentor::cuda
