// mentor::cpu::gemm<float> against OpenBLAS's threaded cblas_sgemm in the same binary, same
// operands, same thread count (2 by default, or the MENTOR_THREADS environment variable): square
// products at n = 256..2048, transposed operands at n = 1024, a training step's tall-skinny linear
// products (forward and both backward forms), and batched attention-sized products.
//
//   build-*/bench/bench_matmul [--benchmark_filter=NN] [--benchmark_repetitions=5
//                               --benchmark_enable_random_interleaving=true]
//
// Each case reports GFLOP/s (2 m n k flops per product over wall time) and `others`, the share of
// the machine's CPU time that other processes used while it ran: on a shared 2-core machine one
// busy neighbour halves a 2-thread GEMM, so a figure is only meaningful when `others` is near 0.
// After the runs the program prints one line per case, e.g.
//   matmul n=1024: mentor X GFLOP/s, openblas Y GFLOP/s, ratio Z
// using the median over the repetitions that ran undisturbed (others < 5%), or over all of them,
// marked "(machine busy)", when none did.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#endif

#include "mentor/backend/cpu/gemm.hpp"  // also brings Eigen/Core (Eigen::setNbThreads)
#include "mentor/backend/cpu/parallel.hpp"

#ifdef MENTOR_OPENBLAS_YARDSTICK
#include <dlfcn.h>
#endif

namespace {

// One GEMM problem: batch x (m x k) * (k x n), operands possibly transposed in storage.
struct GemmShape {
  int64_t batch, m, n, k;
  bool trans_a, trans_b;
  double flops() const { return 2.0 * static_cast<double>(batch * m * n * k); }
};

struct GemmOperands {
  std::vector<float> a, b, c;
  explicit GemmOperands(const GemmShape& s) {
    std::mt19937 rng(42);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    a.resize(static_cast<std::size_t>(s.batch * s.m * s.k));
    b.resize(static_cast<std::size_t>(s.batch * s.k * s.n));
    c.assign(static_cast<std::size_t>(s.batch * s.m * s.n), 0.0f);
    for (auto& v : a) v = dist(rng);
    for (auto& v : b) v = dist(rng);
  }
  // Tightly packed: the leading dimension is the stored column count.
  static int64_t lda(const GemmShape& s) { return s.trans_a ? s.m : s.k; }
  static int64_t ldb(const GemmShape& s) { return s.trans_b ? s.k : s.n; }
};

// A library's worker threads may still be spinning when the other library starts (OpenBLAS
// busy-waits for a while after each call), which would slow whichever runs next on 2 cores. A short
// pause before each case lets them go to sleep.
void let_idle_threads_sleep() { std::this_thread::sleep_for(std::chrono::milliseconds(150)); }

// CPU seconds the whole machine (all processes) and this process have used so far; their difference
// over a run is what other processes took. Linux only (/proc/stat); elsewhere both read 0.
class CpuUsageProbe {
 public:
  CpuUsageProbe() : machine_start_(machine_busy_seconds()), process_start_(process_seconds()) {}
  // Share of the machine's CPU capacity that other processes used since construction.
  double others_share(double wall_seconds) const {
    const double cpus = static_cast<double>(std::max(1u, std::thread::hardware_concurrency()));
    const double others =
        (machine_busy_seconds() - machine_start_) - (process_seconds() - process_start_);
    return wall_seconds > 0.0 ? std::max(0.0, others) / (cpus * wall_seconds) : 0.0;
  }

 private:
  static double machine_busy_seconds() {
#if defined(__linux__)
    std::ifstream stat("/proc/stat");
    std::string label;
    // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
    long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
    stat >> label >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
    return static_cast<double>(user + nice + system + irq + softirq + steal) /
           static_cast<double>(sysconf(_SC_CLK_TCK));
#else
    return 0.0;
#endif
  }
  static double process_seconds() {
#if defined(__linux__)
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    const auto seconds = [](const timeval& t) {
      return static_cast<double>(t.tv_sec) + 1e-6 * static_cast<double>(t.tv_usec);
    };
    return seconds(usage.ru_utime) + seconds(usage.ru_stime);
#else
    return 0.0;
#endif
  }
  double machine_start_, process_start_;
};

// Runs `product` in the timing loop and sets the GFLOP/s and `others` counters.
template <class Product>
void time_product(benchmark::State& state, const GemmShape& s, float* c, Product&& product) {
  const auto wall_start = std::chrono::steady_clock::now();
  const CpuUsageProbe probe;
  for (auto _ : state) {
    product();
    benchmark::DoNotOptimize(c);
    benchmark::ClobberMemory();
  }
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  state.counters["GFLOP/s"] = benchmark::Counter(
      s.flops() * 1e-9 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["others"] = probe.others_share(wall);
}

void run_mentor(benchmark::State& state, GemmShape s) {
  GemmOperands ops(s);
  let_idle_threads_sleep();
  time_product(state, s, ops.c.data(), [&] {
    if (s.batch == 1) {
      mentor::cpu::gemm<float>(s.trans_a, s.trans_b, s.m, s.n, s.k, 1.0f, ops.a.data(),
                               GemmOperands::lda(s), ops.b.data(), GemmOperands::ldb(s), 0.0f,
                               ops.c.data(), s.n);
    } else {
      mentor::cpu::gemm_batched<float>(s.trans_a, s.trans_b, s.batch, s.m, s.n, s.k, 1.0f,
                                       ops.a.data(), GemmOperands::lda(s), s.m * s.k, ops.b.data(),
                                       GemmOperands::ldb(s), s.k * s.n, 0.0f, ops.c.data(), s.n,
                                       s.m * s.n);
    }
  });
}

#ifdef MENTOR_OPENBLAS_YARDSTICK
// The yardstick: OpenBLAS's threaded build (Debian's openblas-pthread) and its own thread pool, as
// a user calling cblas_sgemm gets it. mentor itself may link the OpenMP build, which has the same
// soname, so the threaded one is loaded privately by path (RTLD_DEEPBIND: its calls stay inside
// it) and called through dlsym.
struct ThreadedOpenBlas {
  // cblas_sgemm's C ABI; the CBLAS enums are ints (CblasRowMajor 101, NoTrans 111, Trans 112).
  using Sgemm = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int,
                         float, float*, int);
  using SetThreads = void (*)(int);
  Sgemm sgemm = nullptr;
  SetThreads set_num_threads = nullptr;
  std::string error;
  ThreadedOpenBlas() {
    void* handle = dlopen(MENTOR_OPENBLAS_YARDSTICK, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (handle == nullptr) {
      error = dlerror();
      return;
    }
    sgemm = reinterpret_cast<Sgemm>(dlsym(handle, "cblas_sgemm"));
    set_num_threads = reinterpret_cast<SetThreads>(dlsym(handle, "openblas_set_num_threads"));
    if (sgemm == nullptr || set_num_threads == nullptr) error = "cblas_sgemm not found";
  }
  bool loaded() const { return error.empty(); }
};
const ThreadedOpenBlas& threaded_openblas() {
  static const ThreadedOpenBlas library;
  return library;
}

void run_openblas(benchmark::State& state, GemmShape s) {
  GemmOperands ops(s);
  let_idle_threads_sleep();
  constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;
  const auto trans = [](bool t) { return t ? kTrans : kNoTrans; };
  const auto cblas_sgemm = threaded_openblas().sgemm;
  time_product(state, s, ops.c.data(), [&] {
    // OpenBLAS 0.3.21 has no batched sgemm: the batch is a loop of (threaded) calls.
    for (int64_t i = 0; i < s.batch; ++i) {
      cblas_sgemm(kRowMajor, trans(s.trans_a), trans(s.trans_b), static_cast<int>(s.m),
                  static_cast<int>(s.n), static_cast<int>(s.k), 1.0f, ops.a.data() + i * s.m * s.k,
                  static_cast<int>(GemmOperands::lda(s)), ops.b.data() + i * s.k * s.n,
                  static_cast<int>(GemmOperands::ldb(s)), 0.0f, ops.c.data() + i * s.m * s.n,
                  static_cast<int>(s.n));
    }
  });
}
#endif

// Registers "<impl>/<case>" for mentor (and OpenBLAS when linked); `case` is the summary's key.
void register_case(const std::string& case_name, GemmShape shape) {
  benchmark::RegisterBenchmark(("mentor/" + case_name).c_str(), run_mentor, shape)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
#ifdef MENTOR_OPENBLAS_YARDSTICK
  if (threaded_openblas().loaded())
    benchmark::RegisterBenchmark(("openblas/" + case_name).c_str(), run_openblas, shape)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
#endif
}

// Console output as usual, plus each case's GFLOP/s kept for the closing comparison.
class SummaryReporter : public benchmark::ConsoleReporter {
 public:
  // Repetitions during which other processes used more than this share of the CPUs are set aside.
  static constexpr double kBusyShare = 0.05;

  void ReportRuns(const std::vector<Run>& runs) override {
    for (const auto& run : runs) {
      if (run.error_occurred) continue;
      const auto gflops = run.counters.find("GFLOP/s");
      if (gflops == run.counters.end()) continue;
      auto& result = results_[run.run_name.function_name];
      if (run.run_type == Run::RT_Aggregate) {
        // Only used when the iterations themselves are not reported (aggregates-only output).
        if (run.aggregate_name == "median") result.aggregate_median = gflops->second.value;
        continue;
      }
      const auto others = run.counters.find("others");
      const double others_share = others == run.counters.end() ? 0.0 : others->second.value;
      (others_share <= kBusyShare ? result.undisturbed : result.disturbed)
          .push_back(gflops->second.value);
    }
    ConsoleReporter::ReportRuns(runs);
  }

  // "matmul n=1024: mentor X GFLOP/s, openblas Y GFLOP/s, ratio Z" for every case both ran.
  void print_summary() const {
    std::printf("\n");
    for (const auto& [name, result] : results_) {
      if (name.rfind("mentor/", 0) != 0) continue;
      const std::string case_name = name.substr(7);
      const auto openblas = results_.find("openblas/" + case_name);
      const double mentor_gflops = result.value();
      if (openblas == results_.end()) {
        std::printf("matmul %s: mentor %.1f GFLOP/s%s\n", label(case_name).c_str(), mentor_gflops,
                    result.busy() ? " (machine busy)" : "");
        continue;
      }
      const double openblas_gflops = openblas->second.value();
      std::printf("matmul %s: mentor %.1f GFLOP/s, openblas %.1f GFLOP/s, ratio %.2f%s\n",
                  label(case_name).c_str(), mentor_gflops, openblas_gflops,
                  mentor_gflops / openblas_gflops,
                  result.busy() || openblas->second.busy() ? " (machine busy)" : "");
    }
  }

 private:
  struct CaseResult {
    double aggregate_median = -1.0;
    std::vector<double> undisturbed, disturbed;
    bool busy() const { return undisturbed.empty() && !disturbed.empty(); }
    double value() const {
      const auto& samples = undisturbed.empty() ? disturbed : undisturbed;
      if (samples.empty()) return aggregate_median;
      std::vector<double> sorted = samples;
      std::sort(sorted.begin(), sorted.end());
      const std::size_t mid = sorted.size() / 2;
      return sorted.size() % 2 == 1 ? sorted[mid] : 0.5 * (sorted[mid - 1] + sorted[mid]);
    }
  };
  // "sgemm_NN/n:1024" reads better as "n=1024"; other cases keep their full name.
  static std::string label(const std::string& case_name) {
    const std::string square_prefix = "sgemm_NN/n:";
    if (case_name.rfind(square_prefix, 0) == 0) {
      return "n=" + case_name.substr(square_prefix.size());
    }
    return case_name;
  }
  std::map<std::string, CaseResult> results_;
};

int threads_from_environment() {
  const char* env = std::getenv("MENTOR_THREADS");
  if (env == nullptr || *env == '\0') return 2;
  const int threads = std::atoi(env);
  return threads > 0 ? threads : 2;
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = threads_from_environment();
  // The same count for everyone: mentor's own split, Eigen's internal OpenMP, and OpenBLAS.
  mentor::cpu::set_num_threads(threads);
  Eigen::setNbThreads(threads);
#ifdef MENTOR_OPENBLAS_YARDSTICK
  if (threaded_openblas().loaded()) {
    threaded_openblas().set_num_threads(threads);
    benchmark::AddCustomContext("openblas", MENTOR_OPENBLAS_YARDSTICK);
  } else {
    benchmark::AddCustomContext("openblas", "not loaded: " + threaded_openblas().error);
  }
#else
  benchmark::AddCustomContext("openblas", "not found at build time (mentor only)");
#endif
#if defined(MENTOR_WITH_OPENBLAS) && MENTOR_WITH_OPENBLAS
  benchmark::AddCustomContext("mentor kernel", "OpenBLAS (OpenMP build), mentor's threads");
#else
  benchmark::AddCustomContext("mentor kernel", "Eigen, mentor's threads");
#endif
  benchmark::AddCustomContext("threads", std::to_string(threads));

  for (const int64_t n : {256, 512, 1024, 2048}) {
    register_case("sgemm_NN/n:" + std::to_string(n), {1, n, n, n, false, false});
  }
  register_case("sgemm_NT/n:1024", {1, 1024, 1024, 1024, false, true});
  register_case("sgemm_TN/n:1024", {1, 1024, 1024, 1024, true, false});
  register_case("sgemm_TT/n:1024", {1, 1024, 1024, 1024, true, true});
  // A training step's linear layer, x [1520, 256] -> [1520, 768] with W [768, 256] (95 sequences
  // of 16 tokens at dim 256): forward y = x W^T, backward dx = dy W and dW = dy^T x.
  register_case("linear_fwd_NT/1520x768x256", {1, 1520, 768, 256, false, true});
  register_case("linear_dx_NN/1520x256x768", {1, 1520, 256, 768, false, false});
  register_case("linear_dw_TN/768x256x1520", {1, 768, 256, 1520, true, false});
  // Attention heads: 32 x (Q K^T) with T = 128, head dim 64, then 32 x (P V).
  register_case("batched_QKt/32x128x128x64", {32, 128, 128, 64, false, true});
  register_case("batched_PV/32x128x64x128", {32, 128, 64, 128, false, false});

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  SummaryReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.print_summary();
  benchmark::Shutdown();
  return 0;
}
