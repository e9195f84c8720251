#pragma once
// CPU threading helper: one place that decides how many threads mentor's CPU kernels use and splits
// index ranges over them with OpenMP. Without OpenMP everything runs serially on the caller's
// thread.
//
// Eigen (when built with -fopenmp and without EIGEN_DONT_PARALLELIZE) follows omp_get_max_threads()
// unless Eigen::setNbThreads() was called, so set_num_threads() also governs Eigen's own products.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace mentor::cpu {

// Threads a parallel region started by mentor would use (1 without OpenMP).
inline int num_threads() {
#if defined(_OPENMP)
  return std::max(1, omp_get_max_threads());
#else
  return 1;
#endif
}

// Sets the thread count for later parallel regions started from this thread (values < 1 mean 1).
inline void set_num_threads(int threads) {
#if defined(_OPENMP)
  omp_set_num_threads(std::max(1, threads));
#else
  (void)threads;
#endif
}

// True inside an active parallel region; kernels then stay serial instead of nesting teams.
inline bool in_parallel_region() {
#if defined(_OPENMP)
  return omp_in_parallel() != 0;
#else
  return false;
#endif
}

namespace detail {

// Waits until counter >= target: a short spin (the usual case, when the other threads finish
// within microseconds), then sleeping on the counter (a futex on Linux). Sleeping matters on a
// shared machine: a thread that spins while the thread it waits for is descheduled on the same
// core keeps that thread off the CPU for a whole time slice, which made 2-thread GEMMs of n <= 512
// 30x slower than single-threaded ones whenever another process kept one core busy.
inline void wait_at_least(const std::atomic<int>& counter, int target) {
  constexpr int kSpinIterations = 1000;  // ~50 us of `pause`
  for (int i = 0; i < kSpinIterations; ++i) {
    if (counter.load(std::memory_order_acquire) >= target) return;
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#endif
  }
  for (int seen = counter.load(std::memory_order_acquire); seen < target;
       seen = counter.load(std::memory_order_acquire)) {
    counter.wait(seen, std::memory_order_acquire);
  }
}

// counter += 1, waking sleepers in wait_at_least once it reaches `target`.
inline void count_and_notify(std::atomic<int>& counter, int target) {
  if (counter.fetch_add(1, std::memory_order_acq_rel) + 1 >= target) counter.notify_all();
}

}  // namespace detail

// Calls f(begin, end) over contiguous chunks that together cover [0, n) exactly once. The range is
// split evenly into at most num_threads() chunks, none shorter than `grain` (so tiny ranges do not
// pay for waking threads); with one chunk, or inside a parallel region, f(0, n) runs on the caller.
// An exception thrown by f is rethrown on the calling thread after every chunk has finished.
//
// Chunks are claimed dynamically, so a thread the OS has not scheduled yet simply gets none, and
// threads that are done sleep (see detail::wait_at_least) rather than spin in OpenMP's closing
// barrier, which they only enter once every thread has arrived and every chunk is finished.
template <class F>
void parallel_for(int64_t n, int64_t grain, F&& f) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t chunk_count = std::min<int64_t>(num_threads(), (n + grain - 1) / grain);
  if (chunk_count <= 1 || in_parallel_region()) {
    f(int64_t{0}, n);
    return;
  }
#if defined(_OPENMP)
  const int chunks = static_cast<int>(chunk_count);
  std::atomic<int> next_chunk{0}, chunks_done{0}, threads_arrived{0};
  std::exception_ptr first_error;
  std::mutex error_mutex;
#pragma omp parallel num_threads(chunks)
  {
    // The runtime may grant fewer threads than asked for; the chunks do not depend on it.
    const int team_size = omp_get_num_threads();
    detail::count_and_notify(threads_arrived, team_size);
    for (int chunk = next_chunk.fetch_add(1, std::memory_order_relaxed); chunk < chunks;
         chunk = next_chunk.fetch_add(1, std::memory_order_relaxed)) {
      try {
        f(n * chunk / chunks, n * (chunk + 1) / chunks);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!first_error) first_error = std::current_exception();
      }
      detail::count_and_notify(chunks_done, chunks);
    }
    detail::wait_at_least(chunks_done, chunks);
    detail::wait_at_least(threads_arrived, team_size);
  }
  if (first_error) std::rethrow_exception(first_error);
#else
  f(int64_t{0}, n);
#endif
}

}  // namespace mentor::cpu
