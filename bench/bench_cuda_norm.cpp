// Bandwidth-bound kernels against torch_ref.py's `norm` section: RMSNorm of 12032×1280 bf16 (the
// LlamaGen-XL width over 32×376 tokens) and cross-entropy over 8192×16384 bf16 logits (32×256
// image tokens, the VQ vocabulary). Counted as PyTorch's script counts them: RMSNorm moves
// 2·rows·C·2 bytes (read x, write y), cross-entropy reads the logits once (rows·V·2 bytes). Also
// the backward passes, for reference.
//
//   build/bench/bench_cuda_norm [--benchmark_out=norm.json --benchmark_out_format=json]
//
// Every iteration is timed with CUDA events (manual time). Exits 0 with a message when no GPU is
// present.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>

#include "mentor/backend/cuda/fused.hpp"
#include "mentor/backend/cuda/stream.hpp"
#include "mentor/core/cuda_api.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/ops/loss.hpp"
#include "mentor/ops/norm.hpp"

namespace {

using namespace mentor;

template <class F>
void time_iterations(benchmark::State& state, F&& work, int warmup = 5) {
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

benchmark::Counter bytes_rate(double bytes) {
  return benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

constexpr int64_t kRows = 32 * 376, kC = 1280;
constexpr int64_t kXentRows = 32 * 256, kVocab = 16384;

void BM_rmsnorm(benchmark::State& state) {
  Generator gen(1);
  Tensor<bf16, CUDA> x = Tensor<bf16, CUDA>::randn(Shape{kRows, kC}, gen);
  Tensor<bf16, CUDA> w = Tensor<bf16, CUDA>::ones(Shape{kC});
  Tensor<bf16, CUDA> y = Tensor<bf16, CUDA>::empty(Shape{kRows, kC});
  time_iterations(state,
                  [&] { cuda::rms_norm_forward(x.data(), w.data(), y.data(), kRows, kC, 1e-5f); });
  state.counters["GBps"] = bytes_rate(2.0 * kRows * kC * 2);
}

void BM_rmsnorm_backward(benchmark::State& state) {
  Generator gen(3);
  Tensor<bf16, CUDA> x = Tensor<bf16, CUDA>::randn(Shape{kRows, kC}, gen);
  Tensor<bf16, CUDA> g = Tensor<bf16, CUDA>::randn(Shape{kRows, kC}, gen);
  Tensor<bf16, CUDA> w = Tensor<bf16, CUDA>::ones(Shape{kC});
  Tensor<bf16, CUDA> dx = Tensor<bf16, CUDA>::empty(Shape{kRows, kC});
  Tensor<bf16, CUDA> dw = Tensor<bf16, CUDA>::empty(Shape{kC});
  time_iterations(state, [&] {
    cuda::rms_norm_backward(x.data(), w.data(), g.data(), dx.data(), dw.data(), kRows, kC, 1e-5f);
  });
  state.counters["GBps"] = bytes_rate(3.0 * kRows * kC * 2);  // read x, g; write dx
}

void BM_xent(benchmark::State& state) {
  Generator gen(4);
  Tensor<bf16, CUDA> logits = Tensor<bf16, CUDA>::randn(Shape{kXentRows, kVocab}, gen);
  Tensor<int64_t, CUDA> targets =
      Tensor<float, CUDA>::rand(Shape{kXentRows}, gen, 0.f, static_cast<float>(kVocab))
          .to<int64_t>();
  Tensor<float, CUDA> lse = Tensor<float, CUDA>::empty(Shape{kXentRows});
  Tensor<float, CUDA> inv_denom = Tensor<float, CUDA>::empty(Shape{1});
  Tensor<bf16, CUDA> loss = Tensor<bf16, CUDA>::empty(Shape{});
  time_iterations(state, [&] {
    cuda::cross_entropy_forward(logits.data(), targets.data(), static_cast<const bf16*>(nullptr),
                                kXentRows, kVocab, 1, lse.data(), inv_denom.data(), loss.data());
  });
  state.counters["GBps"] = bytes_rate(1.0 * kXentRows * kVocab * 2);
}

void BM_xent_backward(benchmark::State& state) {
  Generator gen(5);
  Tensor<bf16, CUDA> logits = Tensor<bf16, CUDA>::randn(Shape{kXentRows, kVocab}, gen);
  Tensor<int64_t, CUDA> targets =
      Tensor<float, CUDA>::rand(Shape{kXentRows}, gen, 0.f, static_cast<float>(kVocab))
          .to<int64_t>();
  Tensor<float, CUDA> loss = Tensor<float, CUDA>::empty(Shape{kXentRows});
  Tensor<float, CUDA> lse = Tensor<float, CUDA>::empty(Shape{kXentRows});
  Tensor<bf16, CUDA> grad = Tensor<bf16, CUDA>::empty(Shape{kXentRows, kVocab});
  cuda::softmax_xent_forward(logits.data(), targets.data(), kXentRows, kVocab, -100, loss.data(),
                             lse.data());
  time_iterations(state, [&] {
    cuda::softmax_xent_backward(logits.data(), targets.data(), lse.data(), nullptr,
                                1.0f / kXentRows, kXentRows, kVocab, -100, grad.data());
  });
  state.counters["GBps"] = bytes_rate(2.0 * kXentRows * kVocab * 2);  // read logits, write grad
}

BENCHMARK(BM_rmsnorm)
    ->Name("rmsnorm/12032x1280")
    ->UseManualTime()
    ->Iterations(50)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_rmsnorm_backward)
    ->Name("rmsnorm_backward/12032x1280")
    ->UseManualTime()
    ->Iterations(50)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_xent)
    ->Name("xent/8192x16384")
    ->UseManualTime()
    ->Iterations(20)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_xent_backward)
    ->Name("xent_backward/8192x16384")
    ->UseManualTime()
    ->Iterations(20)
    ->Unit(benchmark::kMicrosecond);

}  // namespace

int main(int argc, char** argv) {
  if (!mentor::cuda::device_available()) {
    std::printf("bench_cuda_norm: no CUDA device on this machine; nothing to measure\n");
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
