#pragma once
// CPU threading helper: one place that decides how many threads mentor's CPU kernels use and splits
// index ranges over them with OpenMP. Without OpenMP everything runs serially on the caller's
// thread.
//
// Eigen (when built with -fopenmp and without EIGEN_DONT_PARALLELIZE) follows omp_get_max_threads()
// unless Eigen::setNbThreads() was called, so set_num_threads() also governs Eigen's own products.
#include <algorithm>
#include <cstdint>
#include <exception>
#include <mutex>

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

// Calls f(begin, end) over contiguous chunks that together cover [0, n) exactly once. The range is
// split evenly over at most num_threads() chunks, none shorter than `grain` (so tiny ranges do not
// pay for waking threads); with one chunk, or inside a parallel region, f(0, n) runs on the caller.
// An exception thrown by f is rethrown on the calling thread after every chunk has finished.
template <class F>
void parallel_for(int64_t n, int64_t grain, F&& f) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t max_chunks = std::min<int64_t>(num_threads(), (n + grain - 1) / grain);
  if (max_chunks <= 1 || in_parallel_region()) {
    f(int64_t{0}, n);
    return;
  }
#if defined(_OPENMP)
  std::exception_ptr first_error;
  std::mutex error_mutex;
#pragma omp parallel num_threads(static_cast <int>(max_chunks))
  {
    // The runtime may grant fewer threads than asked for; split by the team we actually got.
    const int64_t chunks = omp_get_num_threads();
    const int64_t chunk = omp_get_thread_num();
    const int64_t begin = n * chunk / chunks;
    const int64_t end = n * (chunk + 1) / chunks;
    try {
      if (begin < end) f(begin, end);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!first_error) first_error = std::current_exception();
    }
  }
  if (first_error) std::rethrow_exception(first_error);
#else
  f(int64_t{0}, n);
#endif
}

}  // namespace mentor::cpu
