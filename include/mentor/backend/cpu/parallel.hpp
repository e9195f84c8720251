#pragma once
// CPU threading: one place that decides how many threads mentor's CPU kernels use, and
// parallel_for, which splits an index range over them.
//
// parallel_for runs on a small pool of std::threads rather than on OpenMP parallel regions. The
// two behave alike on an idle machine, but this project runs on a 2-core machine shared with
// compilers and other jobs, and there OpenMP's model breaks down: a region cannot end before every
// team thread has reached its closing barrier, and libgomp's threads wait by spinning. When another
// process holds one core, the two team threads end up sharing the other one, each spinning while
// the other needs the CPU, and a 2-thread GEMM of n = 256 measured 5 GFLOP/s against 150 for a
// single thread (30x slower; OMP_WAIT_POLICY=passive avoided it, but that is read once at
// program start). Here chunks are claimed from a shared counter, so a thread the OS has not
// scheduled simply takes none and the caller never waits for it; waiting threads spin for a few
// tens of microseconds (enough for back-to-back calls on an idle machine) and then sleep.
//
// OpenMP stays in use where others use it (Eigen's own parallel products follow
// omp_get_max_threads(), which set_num_threads() also sets).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
#if defined(_OPENMP)
#include <omp.h>
#endif

#include "mentor/core/error.hpp"

namespace mentor::cpu {

namespace detail {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

// Spins while `still_waiting()` for at most `spin_for`, then sleeps on `counter` (a futex on
// Linux) until it differs from the value seen. Returns once still_waiting() is false.
template <class StillWaiting>
void spin_then_sleep(const std::atomic<uint32_t>& counter, std::chrono::microseconds spin_for,
                     StillWaiting&& still_waiting) {
  const auto spin_until = std::chrono::steady_clock::now() + spin_for;
  for (int i = 0; still_waiting(); ++i) {
    if (i % 64 == 63 && std::chrono::steady_clock::now() > spin_until) break;
    cpu_relax();
  }
  for (uint32_t seen = counter.load(std::memory_order_acquire); still_waiting();
       seen = counter.load(std::memory_order_acquire)) {
    counter.wait(seen, std::memory_order_acquire);
  }
}

// True on a pool worker, and on a caller while it runs chunks: nested parallel_for calls then run
// serially instead of waiting on the pool they are part of.
inline thread_local bool inside_parallel_for = false;

// While alive, OpenMP regions started from this thread (Eigen's parallel products among them) get
// one thread: kernels already running on every core must not start teams of their own. Eigen
// follows the calling thread's nthreads ICV unless Eigen::setNbThreads() was called, which mentor
// never does.
class SerialOpenMpScope {
 public:
#if defined(_OPENMP)
  SerialOpenMpScope() : saved_threads_(omp_get_max_threads()) {
    if (saved_threads_ != 1) omp_set_num_threads(1);
  }
  ~SerialOpenMpScope() {
    if (saved_threads_ != 1) omp_set_num_threads(saved_threads_);
  }

 private:
  int saved_threads_;
#else
  SerialOpenMpScope() = default;
#endif

 public:
  SerialOpenMpScope(const SerialOpenMpScope&) = delete;
  SerialOpenMpScope& operator=(const SerialOpenMpScope&) = delete;
};

// Worker threads plus the calling thread run the chunks of one job at a time.
//
// A job is published as (epoch, next chunk) in one 64-bit word. A thread claims chunk c of epoch e
// by a compare-exchange from (e, c) to (e, c + 1), and reads the job's function and chunk count
// only after seeing (e, c): they are written before the epoch is, and the next job's are written
// only after every chunk of this one has finished, which cannot happen before a successful claim.
// So a late thread either claims a chunk of the live job or fails its exchange, and the caller
// waits only for chunks that were actually claimed.
class ThreadPool {
 public:
  using ChunkFunction = void (*)(void* context, int64_t chunk);

  // Never destroyed: its threads sleep through program exit, and code running in static
  // destructors can still call parallel_for.
  static ThreadPool& instance() {
    static ThreadPool* const pool = new ThreadPool();
    return *pool;
  }

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  ~ThreadPool() { stop_workers(); }

  // Threads that run a job, the caller included.
  int size() const { return size_.load(std::memory_order_relaxed); }

  void resize(int threads) {
    // The caller of the running job holds job_mutex_, so a chunk resizing would deadlock.
    MENTOR_CHECK(!inside_parallel_for, "mentor::cpu::set_num_threads(", threads,
                 ") called inside a parallel_for chunk");
    threads = std::max(1, threads);
    const std::lock_guard<std::mutex> lock(job_mutex_);
    if (threads == size()) return;
    stop_workers();
    start_workers(threads - 1);
  }

  // Runs chunk_function(context, c) for every c in [0, chunks) on the pool and the calling thread
  // and returns when all have finished. Returns false without running anything when another
  // thread's job holds the pool; the caller then runs the work itself.
  bool try_run(int64_t chunks, ChunkFunction chunk_function, void* context) {
    const std::unique_lock<std::mutex> lock(job_mutex_, std::try_to_lock);
    if (!lock.owns_lock()) return false;
    chunk_count_.store(chunks, std::memory_order_relaxed);
    chunk_function_.store(chunk_function, std::memory_order_relaxed);
    context_.store(context, std::memory_order_relaxed);
    chunks_done_.store(0, std::memory_order_relaxed);
    epoch_ = (epoch_ + 1) & 0xffffffffu;
    job_.store(epoch_ << 32, std::memory_order_release);
    job_signal_.fetch_add(1, std::memory_order_release);
    job_signal_.notify_all();  // a system call only when some worker is asleep

    run_claimed_chunks();
    spin_then_sleep(chunks_done_, kCallerSpin, [&] {
      return chunks_done_.load(std::memory_order_acquire) < static_cast<uint32_t>(chunks);
    });
    return true;
  }

 private:
  // How long an idle worker spins for the next job before sleeping, and how long a caller spins
  // for the last chunks before sleeping: long enough to catch back-to-back calls and a slightly
  // later partner on an idle machine, short enough to give the core away quickly on a busy one.
  static constexpr std::chrono::microseconds kWorkerSpin{100};
  static constexpr std::chrono::microseconds kCallerSpin{50};

  ThreadPool() {
#if defined(_OPENMP)
    start_workers(std::max(1, omp_get_max_threads()) - 1);
#else
    start_workers(std::max(1u, std::thread::hardware_concurrency()) - 1);
#endif
  }

  void start_workers(int count) {
    stopping_.store(false, std::memory_order_relaxed);
    workers_.reserve(static_cast<std::size_t>(count));
    // The signal value is read here, not on the new thread, so a stop or job signalled before the
    // thread first runs is still seen as new.
    const uint32_t signal = job_signal_.load(std::memory_order_acquire);
    for (int i = 0; i < count; ++i) workers_.emplace_back([this, signal] { worker_loop(signal); });
    size_.store(count + 1, std::memory_order_relaxed);
  }

  void stop_workers() {
    stopping_.store(true, std::memory_order_release);
    job_signal_.fetch_add(1, std::memory_order_release);
    job_signal_.notify_all();
    for (auto& worker : workers_) worker.join();
    workers_.clear();
    size_.store(1, std::memory_order_relaxed);
  }

  // Claims and runs chunks of the live job until none is left.
  void run_claimed_chunks() {
    const SerialOpenMpScope serial_openmp;
    inside_parallel_for = true;
    uint64_t job = job_.load(std::memory_order_acquire);
    for (;;) {
      const auto chunk = static_cast<int64_t>(job & 0xffffffffu);
      const int64_t chunks = chunk_count_.load(std::memory_order_relaxed);
      const ChunkFunction chunk_function = chunk_function_.load(std::memory_order_relaxed);
      void* const context = context_.load(std::memory_order_relaxed);
      if (chunk >= chunks) break;
      if (!job_.compare_exchange_weak(job, job + 1, std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
        continue;  // `job` now holds the current value; look again
      }
      chunk_function(context, chunk);
      if (chunks_done_.fetch_add(1, std::memory_order_acq_rel) + 1 ==
          static_cast<uint32_t>(chunks)) {
        chunks_done_.notify_all();
      }
      job = job_.load(std::memory_order_acquire);
    }
    inside_parallel_for = false;
  }

  void worker_loop(uint32_t seen_signal) {
    for (;;) {
      spin_then_sleep(job_signal_, kWorkerSpin,
                      [&] { return job_signal_.load(std::memory_order_acquire) == seen_signal; });
      seen_signal = job_signal_.load(std::memory_order_acquire);
      if (stopping_.load(std::memory_order_acquire)) return;
      run_claimed_chunks();
    }
  }

  std::mutex job_mutex_;  // one job (or resize) at a time
  std::vector<std::thread> workers_;
  std::atomic<int> size_{1};
  std::atomic<bool> stopping_{false};
  uint64_t epoch_ = 0;            // guarded by job_mutex_
  std::atomic<uint64_t> job_{0};  // (epoch << 32) | next unclaimed chunk
  std::atomic<int64_t> chunk_count_{0};
  std::atomic<ChunkFunction> chunk_function_{nullptr};
  std::atomic<void*> context_{nullptr};
  std::atomic<uint32_t> chunks_done_{0};
  std::atomic<uint32_t> job_signal_{0};  // bumped to wake workers for a job or to stop
};

}  // namespace detail

// Threads parallel_for uses, the calling thread included.
inline int num_threads() { return detail::ThreadPool::instance().size(); }

// Sets the thread count of parallel_for and of OpenMP regions started from this thread (values < 1
// mean 1). Throws mentor::Error when called from inside a parallel_for chunk.
inline void set_num_threads(int threads) {
  threads = std::max(1, threads);
  detail::ThreadPool::instance().resize(threads);
#if defined(_OPENMP)
  omp_set_num_threads(threads);
#endif
}

// True inside a parallel_for chunk or an active OpenMP region; kernels then stay serial instead of
// nesting.
inline bool in_parallel_region() {
#if defined(_OPENMP)
  if (omp_in_parallel() != 0) return true;
#endif
  return detail::inside_parallel_for;
}

// Calls f(begin, end) over contiguous chunks that together cover [0, n) exactly once. The range is
// split evenly into at most num_threads() chunks, none shorter than `grain` (so tiny ranges do not
// pay for waking threads); with one chunk, inside a parallel region, or while another thread's
// parallel_for holds the pool, f(0, n) runs on the caller. An exception thrown by f is rethrown on
// the calling thread after every chunk has finished. Which thread runs which chunk is not fixed.
template <class F>
void parallel_for(int64_t n, int64_t grain, F&& f) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t chunks = std::min<int64_t>(num_threads(), n / grain);
  if (chunks <= 1 || in_parallel_region()) {
    f(int64_t{0}, n);
    return;
  }
  struct Job {
    F& f;
    int64_t n, chunks;
    std::exception_ptr first_error;
    std::mutex error_mutex;
  } job{f, n, chunks, nullptr, {}};
  const auto run_chunk = [](void* context, int64_t chunk) {
    auto& j = *static_cast<Job*>(context);
    try {
      j.f(j.n * chunk / j.chunks, j.n * (chunk + 1) / j.chunks);
    } catch (...) {
      const std::lock_guard<std::mutex> lock(j.error_mutex);
      if (!j.first_error) j.first_error = std::current_exception();
    }
  };
  if (!detail::ThreadPool::instance().try_run(chunks, run_chunk, &job)) {
    f(int64_t{0}, n);
    return;
  }
  if (job.first_error) std::rethrow_exception(job.first_error);
}

}  // namespace mentor::cpu
