// GPU GEMM through mentor's cuBLASLt launcher, on the workloads of torch_ref.py's `gemm` section:
// bf16 8192³ (tensor cores, float accumulation), float32 4096³ without and with TF32, and a 1 GiB
// device-to-device copy (the bandwidth ceiling).
//
//   build/bench/bench_cuda_gemm [--benchmark_out=gemm.json --benchmark_out_format=json]
//
// Each benchmark times every iteration with CUDA events (manual time) after warm-up launches and
// reports TFLOPS (or TBps for the copy) as a rate counter; tools/device-check.sh reads the JSON and
// compares the numbers with PyTorch's from the same run. Exits 0 with a message when no GPU is
// present.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>

#include "mentor/backend/cuda/gemm.hpp"
#include "mentor/backend/cuda/stream.hpp"
#include "mentor/core/cuda_api.hpp"
#include "mentor/core/tensor.hpp"

namespace {

using namespace mentor;

// Runs `work` per iteration between two events (after `warmup` untimed runs).
template <class F>
void time_iterations(benchmark::State& state, F&& work, int warmup = 3) {
  for (int i = 0; i < warmup; ++i) work();
  cuda::synchronize();
  cuda::Event start(true), stop(true);
  for (auto _ : state) {
    start.record();
    work();
    stop.record();
    stop.synchronize();
    state.SetIterationTime(static_cast<double>(stop.elapsed_ms_since(start)) / 1e3);
  }
}

template <class T>
void gemm_square(benchmark::State& state, bool tf32) {
  const int64_t n = state.range(0);
  Generator gen(1);
  Tensor<T, CUDA> a = Tensor<T, CUDA>::randn(Shape{n, n}, gen);
  Tensor<T, CUDA> b = Tensor<T, CUDA>::randn(Shape{n, n}, gen);
  Tensor<T, CUDA> c = Tensor<T, CUDA>::empty(Shape{n, n});
  cuda::set_allow_tf32(tf32);
  time_iterations(state, [&] {
    cuda::gemm<T>(false, false, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n);
  });
  cuda::set_allow_tf32(false);
  state.counters["TFLOPS"] =
      benchmark::Counter(2.0 * n * n * n / 1e12, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_gemm_bf16(benchmark::State& state) { gemm_square<bf16>(state, false); }
void BM_gemm_float32(benchmark::State& state) { gemm_square<float>(state, false); }
void BM_gemm_float32_tf32(benchmark::State& state) { gemm_square<float>(state, true); }

void BM_copy(benchmark::State& state) {
  const int64_t n = int64_t{1} << 28;  // 1 GiB of floats
  Tensor<float, CUDA> x = Tensor<float, CUDA>::zeros(Shape{n});
  Tensor<float, CUDA> y = Tensor<float, CUDA>::empty(Shape{n});
  time_iterations(state,
                  [&] { cuda::copy_device_to_device(y.data(), x.data(), n * sizeof(float)); });
  state.counters["TBps"] =
      benchmark::Counter(2.0 * 4 * n / 1e12, benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK(BM_gemm_bf16)
    ->Name("gemm/bf16")
    ->Arg(8192)
    ->UseManualTime()
    ->Iterations(20)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_gemm_float32)
    ->Name("gemm/float32")
    ->Arg(4096)
    ->UseManualTime()
    ->Iterations(10)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_gemm_float32_tf32)
    ->Name("gemm/float32+tf32")
    ->Arg(4096)
    ->UseManualTime()
    ->Iterations(20)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_copy)
    ->Name("copy/1GiB")
    ->UseManualTime()
    ->Iterations(10)
    ->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  if (!mentor::cuda::device_available()) {
    std::printf("bench_cuda_gemm: no CUDA device on this machine; nothing to measure\n");
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
