// Guided image-token generation on the CPU, at the configuration of
// ../shared/bench/torch_cpu_ref.py's decode (dim 256, 4 layers, 4 heads, vocabulary 1024,
// 32 condition tokens of dim 256, 8×8 = 64 image tokens, guidance scale 3, greedy): one image
// (2 guided sequences) and a batch of 8, at 1 and 2 threads. Real time per generation; images/s.
// `decoder` is generate::CpuGeneration (the CPU inference engine), `op_path` the same generation
// through GPT::prefill/step (generate_greedy), for comparison. tools/bench-generate-cpu.sh runs
// this beside the PyTorch baseline and prints the ratios.
#include <benchmark/benchmark.h>

#include <memory>
#include <vector>

#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/generate/generate.hpp"
#include "mentor/generate/greedy.hpp"
#include "torch_cpu_ref_config.hpp"

using namespace mentor;

namespace {

models::GPTConfig bench_config() { return bench::torch_cpu_ref_config(); }

models::GPT<float, CPU>& bench_model() {
  static std::unique_ptr<models::GPT<float, CPU>> model = [] {
    Generator gen(0);
    auto m = std::make_unique<models::GPT<float, CPU>>(bench_config(), gen);
    NoGradGuard no_grad;
    // upstream zero-initialises the head; random logits make the argmax do real work
    m->output.weight.copy_(Tensor<float>::randn(m->output.weight.shape(), gen, 0.f, 0.02f));
    m->eval();
    return m;
  }();
  return *model;
}

std::vector<generate::GenerationRequest> bench_requests(int64_t count) {
  const models::GPTConfig c = bench_config();
  Generator gen(1);
  std::vector<generate::GenerationRequest> requests(static_cast<size_t>(count));
  for (auto& r : requests) {
    r.caption = Tensor<float>::randn({c.cls_token_num, c.caption_dim}, gen);
    r.cfg_scale = 3.0;
    r.sampling.greedy = true;
  }
  return requests;
}

void report(benchmark::State& state, int64_t images) {
  state.counters["images/s"] = benchmark::Counter(static_cast<double>(images),
                                                  benchmark::Counter::kIsIterationInvariantRate);
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(images * 64),
                                                  benchmark::Counter::kIsIterationInvariantRate);
}

// args: threads, batch (images)
void decoder(benchmark::State& state) {
  cpu::set_num_threads(static_cast<int>(state.range(0)));
  const int64_t batch = state.range(1);
  auto& model = bench_model();
  const auto requests = bench_requests(batch);
  generate::CpuGeneration generation(model, batch, 64);
  for (auto _ : state) benchmark::DoNotOptimize(generation.run(requests).data());
  report(state, batch);
}
BENCHMARK(decoder)
    ->ArgNames({"threads", "batch"})
    ->Args({1, 1})
    ->Args({2, 1})
    ->Args({1, 8})
    ->Args({2, 8})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void op_path(benchmark::State& state) {
  cpu::set_num_threads(static_cast<int>(state.range(0)));
  const int64_t batch = state.range(1);
  auto& model = bench_model();
  const models::GPTConfig c = bench_config();
  Generator gen(1);
  const Tensor<float> caption = Tensor<float>::randn({batch, c.cls_token_num, c.caption_dim}, gen);
  for (auto _ : state)
    benchmark::DoNotOptimize(
        generate::generate_greedy(model, caption, Tensor<bool>(), 64, 3.0).data());
  report(state, batch);
}
BENCHMARK(op_path)
    ->ArgNames({"threads", "batch"})
    ->Args({1, 1})
    ->Args({2, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
