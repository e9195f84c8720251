// Training steps on the CPU, each beside a PyTorch model of the same size (tools/bench-train-cpu.sh
// runs both in one command and prints the ratios):
//   decoder_step  the tiny decoder of ../shared/bench/torch_cpu_ref.py (dim 256, 4 layers, 4 heads,
//                 vocabulary 1024, 32 condition tokens of dim 256, 8x8 image tokens, batch 16):
//                 forward, cross-entropy, backward, AdamW (0.9, 0.95, wd 0.05), no clipping.
//                 mentor's GPT has LlamaGen's two-layer caption MLP and 2D RoPE where the script
//                 has one linear layer and no rotation: a little more work on mentor's side.
//   mentor_stage2 one MENTOR stage-2 step at the shipped model's configuration (docs/model/
//                 mentor.json: CLIP 96 x 4 frozen, projector, T5 128 x 3, GPT 256 x 6, 64 image
//                 tokens), batch 16, one 64 x 64 reference each, 48 prompt tokens (16 of them the
//                 reference's patches); tools/reference/torch_mentor_step.py is the same in PyTorch
//                 (HF CLIPVisionModel and T5EncoderModel, a LlamaGen-style GPT).
// Both in float32, random weights and data, at the thread count of --benchmark_filter's
// threads:N. Counters: tokens/s (decoder positions per second) and peak_rss_MB (the process's
// peak resident memory: run one benchmark per process to read it for that one).
#include <benchmark/benchmark.h>

#include <sys/resource.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/io/json_config.hpp"
#include "mentor/models/gpt.hpp"
#include "mentor/models/mentor.hpp"
#include "mentor/train/trainer.hpp"
#include "torch_cpu_ref_config.hpp"

using namespace mentor;

namespace {

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

train::TrainerOptions adamw_no_clip() {
  train::TrainerOptions o;
  o.schedule = train::Constant{1e-3};
  o.max_grad_norm = 0;
  return o;
}

// Random image tokens [batch, count] in [0, vocab).
Tensor<int64_t> random_codes(int64_t batch, int64_t count, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> pick(0, vocab - 1);
  std::vector<int64_t> codes(static_cast<size_t>(batch * count));
  for (int64_t& code : codes) code = pick(rng);
  return Tensor<int64_t>::from_vector(codes, Shape{batch, count});
}

void report(benchmark::State& state, double tokens_per_step) {
  state.counters["tokens/s"] =
      benchmark::Counter(tokens_per_step, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["peak_rss_MB"] = peak_rss_mb();
}

// ---- torch_cpu_ref.py's tiny decoder ------------------------------------------------------------

// No guidance dropout either: the script trains on the condition as given.
models::GPTConfig decoder_config() {
  models::GPTConfig c = bench::torch_cpu_ref_config();
  c.class_dropout_prob = 0.0;
  return c;
}

void decoder_step(benchmark::State& state) {
  cpu::set_num_threads(static_cast<int>(state.range(0)));
  const models::GPTConfig c = decoder_config();
  constexpr int64_t kBatch = 16, kTokens = 64;
  Generator gen(0);
  models::GPT<float, CPU> model(c, gen);
  {
    NoGradGuard no_grad;  // upstream's zero head would make the first steps trivial
    model.output.weight.copy_(Tensor<float>::randn(model.output.weight.shape(), gen, 0.f, 0.02f));
  }
  model.train();
  const Tensor<float> caption = Tensor<float>::randn({kBatch, c.cls_token_num, c.caption_dim}, gen);
  const Tensor<int64_t> codes = random_codes(kBatch, kTokens, c.vocab_size, 1);
  const Tensor<int64_t> inputs = codes.narrow(1, 0, kTokens - 1).contiguous();
  train::Trainer<float> trainer(model, adamw_no_clip());
  const auto step = [&] {
    return trainer.step(
        [&](int64_t) { return model.loss(model.forward_train(inputs, caption), codes); });
  };
  for (int i = 0; i < 2; ++i) step();  // warm-up: optimizer state, buffers
  for (auto _ : state) benchmark::DoNotOptimize(step().loss);
  report(state, static_cast<double>(kBatch * (c.cls_token_num + kTokens - 1)));
}
BENCHMARK(decoder_step)
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// ---- a MENTOR stage-2 step at the shipped configuration -----------------------------------------

// The shipped architecture without dropout, as the PyTorch model has none.
models::MentorConfig shipped_config() {
  models::MentorConfig c = models::MentorConfig::from_json(
      io::load_json_config(std::string(MENTOR_SHIPPED_MODEL_DIR) + "/mentor.json"));
  c.gpt.token_dropout_p = c.gpt.resid_dropout_p = c.gpt.ffn_dropout_p = 0.0;
  c.gpt.class_dropout_prob = 0.0;
  c.encoder.text.dropout_rate = 0.0;
  return c;
}

void mentor_stage2(benchmark::State& state) {
  cpu::set_num_threads(static_cast<int>(state.range(0)));
  const models::MentorConfig c = shipped_config();
  constexpr int64_t kBatch = 16, kPrompt = 48;
  const int64_t image = c.encoder.vision.image_size;
  const int64_t patches =
      (image / c.encoder.vision.patch_size) * (image / c.encoder.vision.patch_size);
  const int64_t tokens = c.gpt.block_size;
  Generator gen(0);
  models::MentorModel<float> model(c, gen);
  {
    NoGradGuard no_grad;
    model.gpt.output.weight.copy_(
        Tensor<float>::randn(model.gpt.output.weight.shape(), gen, 0.f, 0.02f));
  }
  model.set_stage(models::MentorStage::InstructionTuning);
  model.train();
  // Each prompt: `patches` <image> placeholders, then text tokens (ids 3 .. vocab - 2).
  std::vector<int64_t> ids;
  for (int64_t b = 0; b < kBatch; ++b)
    for (int64_t t = 0; t < kPrompt; ++t)
      ids.push_back(t < patches ? c.encoder.image_token_id : 3 + (b * 7 + t * 13) % 300);
  const Tensor<int64_t> prompt = Tensor<int64_t>::from_vector(ids, Shape{kBatch, kPrompt});
  const Tensor<bool> mask = Tensor<bool>::ones({kBatch, kPrompt});
  const Tensor<float> images = Tensor<float>::rand({kBatch, 3, image, image}, gen, -1.f, 1.f);
  const Tensor<int64_t> codes = random_codes(kBatch, tokens, c.gpt.vocab_size, 2);
  const Tensor<int64_t> inputs = codes.narrow(1, 0, tokens - 1).contiguous();
  train::Trainer<float> trainer(model, adamw_no_clip());
  const auto step = [&] {
    return trainer.step([&](int64_t) {
      return model.loss(model.forward_train(inputs, prompt, mask, images), codes);
    });
  };
  for (int i = 0; i < 2; ++i) step();
  for (auto _ : state) benchmark::DoNotOptimize(step().loss);
  report(state, static_cast<double>(kBatch * (kPrompt + tokens - 1)));
}
BENCHMARK(mentor_stage2)
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
