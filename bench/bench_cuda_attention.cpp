// Flash attention (bf16, causal, B16 H16 D64) at the sequence lengths of the model, the workloads
// of torch_ref.py's `attn` section: S = 376 (120 condition + 256 image tokens) and 1144 (120 +
// 1024); forward alone and forward + backward. Also head dim 128 and the general (cuBLAS) path for
// reference.
//
//   build/bench/bench_cuda_attention [--benchmark_out=attn.json --benchmark_out_format=json]
//
// FLOPs are counted as PyTorch's script does: 4·B·H·S²·D / 2 for a causal forward, 3.5× that for
// forward + backward. Every iteration is timed with CUDA events (manual time). Exits 0 with a
// message when no GPU is present.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <cstdio>

#include "mentor/backend/cuda/fused.hpp"
#include "mentor/backend/cuda/stream.hpp"
#include "mentor/core/cuda_api.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/ops/attention.hpp"

namespace {

using namespace mentor;

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

struct AttentionInputs {
  cuda::FlashAttentionShape shape;
  Tensor<bf16, CUDA> q, k, v, out, grad_out, dq, dk, dv;
  Tensor<float, CUDA> lse;

  AttentionInputs(int64_t B, int64_t H, int64_t S, int64_t D) {
    shape.batch = B, shape.heads = H, shape.kv_heads = H, shape.q_len = S, shape.kv_len = S;
    shape.head_dim = D, shape.q_offset = 0, shape.causal = true;
    Generator gen(7);
    const Shape s{B, H, S, D};
    q = Tensor<bf16, CUDA>::randn(s, gen);
    k = Tensor<bf16, CUDA>::randn(s, gen);
    v = Tensor<bf16, CUDA>::randn(s, gen);
    grad_out = Tensor<bf16, CUDA>::randn(s, gen);
    out = Tensor<bf16, CUDA>::empty(s);
    dq = Tensor<bf16, CUDA>::empty(s);
    dk = Tensor<bf16, CUDA>::empty(s);
    dv = Tensor<bf16, CUDA>::empty(s);
    lse = Tensor<float, CUDA>::empty(Shape{B, H, S});
  }
  void forward() {
    cuda::flash_attention_forward(q.data(), k.data(), v.data(), nullptr, shape, out.data(),
                                  lse.data());
  }
  void backward() {
    cuda::flash_attention_backward(q.data(), k.data(), v.data(), out.data(), grad_out.data(),
                                   lse.data(), nullptr, shape, dq.data(), dk.data(), dv.data());
  }
  double causal_forward_flops() const {
    const double B = shape.batch, H = shape.heads, S = shape.q_len, D = shape.head_dim;
    return 4.0 * B * H * S * S * D / 2.0;
  }
};

void BM_attn_fwd(benchmark::State& state) {
  AttentionInputs in(16, 16, state.range(0), state.range(1));
  time_iterations(state, [&] { in.forward(); });
  state.counters["TFLOPS"] = benchmark::Counter(in.causal_forward_flops() / 1e12,
                                                benchmark::Counter::kIsIterationInvariantRate);
}

void BM_attn_fwd_bwd(benchmark::State& state) {
  AttentionInputs in(16, 16, state.range(0), state.range(1));
  time_iterations(state, [&] {
    in.forward();
    in.backward();
  });
  state.counters["TFLOPS"] = benchmark::Counter(3.5 * in.causal_forward_flops() / 1e12,
                                                benchmark::Counter::kIsIterationInvariantRate);
}

// The op-level entry point on its general path (head dim 72: no flash kernel), for reference.
void BM_attn_general_fwd(benchmark::State& state) {
  const int64_t B = 16, H = 16, S = state.range(0), D = 72;
  Generator gen(9);
  const Shape shape{B, H, S, D};
  Tensor<bf16, CUDA> q = Tensor<bf16, CUDA>::randn(shape, gen);
  Tensor<bf16, CUDA> k = Tensor<bf16, CUDA>::randn(shape, gen);
  Tensor<bf16, CUDA> v = Tensor<bf16, CUDA>::randn(shape, gen);
  NoGradGuard no_grad;
  time_iterations(state, [&] {
    Tensor<bf16, CUDA> out = scaled_dot_product_attention(q, k, v, AttnMask<CUDA>::causal());
  });
  state.counters["TFLOPS"] = benchmark::Counter(4.0 * B * H * S * S * D / 2.0 / 1e12,
                                                benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK(BM_attn_fwd)
    ->Name("attn_fwd")
    ->ArgNames({"S", "D"})
    ->Args({376, 64})
    ->Args({1144, 64})
    ->Args({1144, 128})
    ->UseManualTime()
    ->Iterations(20)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_attn_fwd_bwd)
    ->Name("attn_fwd_bwd")
    ->ArgNames({"S", "D"})
    ->Args({376, 64})
    ->Args({1144, 64})
    ->Args({1144, 128})
    ->UseManualTime()
    ->Iterations(20)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_attn_general_fwd)
    ->Name("attn_general_fwd")
    ->ArgNames({"S"})
    ->Arg(376)
    ->UseManualTime()
    ->Iterations(10)
    ->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  if (!mentor::cuda::device_available()) {
    std::printf("bench_cuda_attention: no CUDA device on this machine; nothing to measure\n");
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
