// CPU microbenchmarks of the ops the models spend their time in: softmax and RMSNorm in GB/s of
// tensor traffic (read + write), attention and conv2d in GFLOP/s. Forward only, float32.
#include <benchmark/benchmark.h>

#include "mentor/ops/attention.hpp"
#include "mentor/ops/conv.hpp"
#include "mentor/ops/norm.hpp"
#include "mentor/ops/softmax.hpp"

using namespace mentor;

static void softmax_rows(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1);
  Generator gen(1);
  auto x = Tensor<float>::randn({rows, cols}, gen);
  for (auto _ : state) benchmark::DoNotOptimize(softmax(x, -1).data());
  state.counters["GB/s"] = benchmark::Counter(2.0 * rows * cols * sizeof(float),
                                              benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
}
BENCHMARK(softmax_rows)->Args({1024, 16384})->Unit(benchmark::kMillisecond)->UseRealTime();

static void rms_norm_rows(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1);
  Generator gen(2);
  auto x = Tensor<float>::randn({rows, cols}, gen);
  auto w = Tensor<float>::randn({cols}, gen);
  for (auto _ : state) benchmark::DoNotOptimize(rms_norm(x, w, 1e-5).data());
  state.counters["GB/s"] = benchmark::Counter(2.0 * rows * cols * sizeof(float),
                                              benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
}
BENCHMARK(rms_norm_rows)->Args({4096, 1280})->Unit(benchmark::kMillisecond)->UseRealTime();

static void causal_attention(benchmark::State& state) {
  const int64_t heads = state.range(0), seq = state.range(1), head_dim = 64;
  Generator gen(3);
  auto q = Tensor<float>::randn({1, heads, seq, head_dim}, gen);
  auto k = Tensor<float>::randn({1, heads, seq, head_dim}, gen);
  auto v = Tensor<float>::randn({1, heads, seq, head_dim}, gen);
  for (auto _ : state)
    benchmark::DoNotOptimize(scaled_dot_product_attention(q, k, v, AttnMask<CPU>::causal()).data());
  // Causal: half of the two S x S x D products.
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * heads * seq * seq * head_dim,
                                                 benchmark::Counter::kIsIterationInvariantRate,
                                                 benchmark::Counter::kIs1000);
}
BENCHMARK(causal_attention)->Args({20, 1024})->Unit(benchmark::kMillisecond)->UseRealTime();

static void conv3x3(benchmark::State& state) {
  const int64_t channels = state.range(0), size = state.range(1);
  Generator gen(4);
  auto x = Tensor<float>::randn({1, channels, size, size}, gen);
  auto w = Tensor<float>::randn({channels, channels, 3, 3}, gen, 0.f, 0.05f);
  auto b = Tensor<float>::zeros({channels});
  for (auto _ : state) benchmark::DoNotOptimize(conv2d(x, w, b, 1, 1).data());
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * channels * channels * 9 * size * size,
                                                 benchmark::Counter::kIsIterationInvariantRate,
                                                 benchmark::Counter::kIs1000);
}
BENCHMARK(conv3x3)->Args({256, 64})->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
