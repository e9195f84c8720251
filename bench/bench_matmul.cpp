// mentor::cpu::gemm<float> against OpenBLAS cblas_sgemm in the same binary, same operands, same
// thread count (2 by default, or the MENTOR_THREADS environment variable): square products at
// n = 256..2048, transposed operands at n = 1024, and batched attention-sized products.
//
//   build-*/bench/bench_matmul [--benchmark_filter=NN] [--benchmark_repetitions=5]
//
// Each case reports GFLOP/s (2 m n k flops per product over wall time). After the runs the program
// prints one line per case with both figures and mentor/OpenBLAS, e.g.
//   matmul n=1024: mentor X GFLOP/s, openblas Y GFLOP/s, ratio Z
// With --benchmark_repetitions the summary uses each case's median.
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

#include "mentor/backend/cpu/gemm.hpp"  // also brings Eigen/Core (Eigen::setNbThreads)
#include "mentor/backend/cpu/parallel.hpp"

#ifdef MENTOR_HAVE_OPENBLAS
#include <cblas.h>
extern "C" void openblas_set_num_threads(int);
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

void run_mentor(benchmark::State& state, GemmShape s) {
  GemmOperands ops(s);
  let_idle_threads_sleep();
  for (auto _ : state) {
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
    benchmark::DoNotOptimize(ops.c.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(s.flops() * 1e-9 * state.iterations(), benchmark::Counter::kIsRate);
}

#ifdef MENTOR_HAVE_OPENBLAS
void run_openblas(benchmark::State& state, GemmShape s) {
  GemmOperands ops(s);
  let_idle_threads_sleep();
  const auto trans = [](bool t) { return t ? CblasTrans : CblasNoTrans; };
  for (auto _ : state) {
    // OpenBLAS 0.3.21 has no batched sgemm: the batch is a loop of (threaded) calls.
    for (int64_t i = 0; i < s.batch; ++i) {
      cblas_sgemm(CblasRowMajor, trans(s.trans_a), trans(s.trans_b), static_cast<int>(s.m),
                  static_cast<int>(s.n), static_cast<int>(s.k), 1.0f, ops.a.data() + i * s.m * s.k,
                  static_cast<int>(GemmOperands::lda(s)), ops.b.data() + i * s.k * s.n,
                  static_cast<int>(GemmOperands::ldb(s)), 0.0f, ops.c.data() + i * s.m * s.n,
                  static_cast<int>(s.n));
    }
    benchmark::DoNotOptimize(ops.c.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(s.flops() * 1e-9 * state.iterations(), benchmark::Counter::kIsRate);
}
#endif

// Registers "<impl>/<case>" for mentor (and OpenBLAS when linked); `case` is the summary's key.
void register_case(const std::string& case_name, GemmShape shape) {
  benchmark::RegisterBenchmark(("mentor/" + case_name).c_str(), run_mentor, shape)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
#ifdef MENTOR_HAVE_OPENBLAS
  benchmark::RegisterBenchmark(("openblas/" + case_name).c_str(), run_openblas, shape)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
#endif
}

// Console output as usual, plus each case's GFLOP/s kept for the closing comparison.
class SummaryReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const auto& run : runs) {
      if (run.error_occurred) continue;
      const auto counter = run.counters.find("GFLOP/s");
      if (counter == run.counters.end()) continue;
      auto& result = results_[run.run_name.function_name];
      if (run.run_type == Run::RT_Aggregate) {
        if (run.aggregate_name == "median") result.median = counter->second.value;
      } else {
        result.samples.push_back(counter->second.value);
      }
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
        std::printf("matmul %s: mentor %.1f GFLOP/s\n", label(case_name).c_str(), mentor_gflops);
        continue;
      }
      const double openblas_gflops = openblas->second.value();
      std::printf("matmul %s: mentor %.1f GFLOP/s, openblas %.1f GFLOP/s, ratio %.2f\n",
                  label(case_name).c_str(), mentor_gflops, openblas_gflops,
                  mentor_gflops / openblas_gflops);
    }
  }

 private:
  struct CaseResult {
    double median = -1.0;
    std::vector<double> samples;
    double value() const {
      if (median >= 0.0 || samples.empty()) return median;
      std::vector<double> sorted = samples;
      std::sort(sorted.begin(), sorted.end());
      return sorted[sorted.size() / 2];
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
#ifdef MENTOR_HAVE_OPENBLAS
  openblas_set_num_threads(threads);
  benchmark::AddCustomContext("openblas", "linked");
#else
  benchmark::AddCustomContext("openblas", "not linked (mentor only)");
#endif
  benchmark::AddCustomContext("threads", std::to_string(threads));

  for (const int64_t n : {256, 512, 1024, 2048}) {
    register_case("sgemm_NN/n:" + std::to_string(n), {1, n, n, n, false, false});
  }
  register_case("sgemm_NT/n:1024", {1, 1024, 1024, 1024, false, true});
  register_case("sgemm_TN/n:1024", {1, 1024, 1024, 1024, true, false});
  register_case("sgemm_TT/n:1024", {1, 1024, 1024, 1024, true, true});
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
