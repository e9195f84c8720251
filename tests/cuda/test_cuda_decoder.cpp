// The graph-captured CUDA decoder (generate/cuda_decoder.hpp, src/cuda/decode.cu) against the CPU:
//   - float: the logits of the prefill and of every step equal CpuDecoder's to float rounding when
//     both are fed the same tokens, and greedy generation gives CpuGeneration's tokens (t2i with
//     left-padded captions, grouped KV heads and per-request guidance; c2i with the null class and
//     the guidance interval);
//   - the device sampler draws the CPU Sampler's token from the same float logits, seed and step
//     (temperature, top-k with ties, top-p, min-p, greedy, -inf entries; vocabularies 40 and
//     16384), and reports NaN logits instead of drawing from them;
//   - bf16: logits within bf16 tolerance of the float CPU decoder, greedy tokens mostly equal;
//   - the graph replays give the eager steps' tokens and logits, bit for bit.
// Every test is skipped with a warning when no GPU is present.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // see test_cuda_runtime.cpp
#endif
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "catch.hpp"
#include "mentor/backend/launch/decode.hpp"
#include "mentor/core/cuda_api.hpp"
#include "mentor/generate/cpu_decoder.hpp"
#include "mentor/generate/cuda_decoder.hpp"
#include "mentor/generate/generate.hpp"
#include "mentor/generate/sampling.hpp"
#include "require_gpu.hpp"

namespace test_cuda_decoder {

using namespace mentor;
using namespace mentor::models;
using namespace mentor::generate;

namespace {

// tests/generate/test_decoder.cpp's configuration.
GPTConfig small_config(GPTModelType type) {
  GPTConfig c;
  c.dim = 64;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_kv_head = 2;
  c.multiple_of = 16;
  c.vocab_size = 40;
  c.block_size = 16;
  c.num_classes = 5;
  c.caption_dim = 20;
  c.model_type = type;
  c.cls_token_num = type == GPTModelType::ClassToImage ? 1 : 6;
  c.rope_prefix = type == GPTModelType::ClassToImage ? RopePrefix::Zero : RopePrefix::Identity;
  c.class_dropout_prob = 0.1;
  c.token_dropout_p = c.resid_dropout_p = c.ffn_dropout_p = 0.0;
  return c;
}

// Random weights everywhere, the output head included (upstream zero-initialises it).
void randomise(GPT<float, CPU>& model, uint64_t seed) {
  Generator gen(seed);
  NoGradGuard no_grad;
  for (auto& [name, t] : model.state()) t->copy_(Tensor<float>::randn(t->shape(), gen, 0.f, 0.3f));
  model.eval();
}

// Every parameter and buffer of `cpu` copied into `gpu` (same configuration), converted to T.
template <class T>
void copy_weights(GPT<float, CPU>& cpu, GPT<T, CUDA>& gpu) {
  NoGradGuard no_grad;
  auto copy_all = [](auto from, auto to) {
    REQUIRE(from.size() == to.size());
    for (size_t i = 0; i < from.size(); ++i) {
      REQUIRE(from[i].first == to[i].first);
      INFO(from[i].first);
      REQUIRE(from[i].second->shape() == to[i].second->shape());
      to[i].second->copy_(from[i].second->template to<T>().template to<CUDA>());
    }
  };
  copy_all(cpu.named_parameters(), gpu.named_parameters());
  copy_all(cpu.named_buffers(), gpu.named_buffers());
  gpu.eval();
  cuda::synchronize();
}

std::vector<GenerationRequest> caption_requests(const GPTConfig& c, int64_t count, uint64_t seed,
                                                bool greedy) {
  Generator data(seed);
  std::vector<GenerationRequest> requests;
  for (int64_t i = 0; i < count; ++i) {
    GenerationRequest r;
    r.caption = Tensor<float>::randn({c.cls_token_num, c.caption_dim}, data);
    std::vector<bool> valid(static_cast<size_t>(c.cls_token_num));
    for (int64_t t = 0; t < c.cls_token_num; ++t) valid[static_cast<size_t>(t)] = t >= i % 4;
    r.emb_mask = Tensor<bool>::from_vector(valid, {c.cls_token_num});
    r.cfg_scale = i % 3 == 0 ? 1.0 : (i % 3 == 1 ? 3.0 : 7.5);
    r.seed = 1000 + static_cast<uint64_t>(i) * 7919;
    r.sampling.greedy = greedy;
    r.sampling.temperature = i % 2 == 0 ? 1.0 : 0.8;
    r.sampling.top_k = i % 4 == 1 ? 10 : 0;
    r.sampling.top_p = i % 4 == 2 ? 0.9 : 1.0;
    requests.push_back(r);
  }
  return requests;
}

std::vector<GenerationRequest> label_requests(int64_t count, bool greedy) {
  std::vector<GenerationRequest> requests(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    GenerationRequest& r = requests[static_cast<size_t>(i)];
    r.class_label = i % 5;
    r.cfg_scale = 1.0 + static_cast<double>(i);
    r.seed = 77 + static_cast<uint64_t>(i);
    r.sampling.greedy = greedy;
    r.sampling.top_k = 8;
  }
  return requests;
}

// Worst |got - want| / (1 + |want|) over rows [0, rows) of [rows, vocab] logits; `where` names the
// worst element.
double worst_difference(const std::vector<float>& got, const float* want_row0, int64_t rows,
                        int64_t vocab, std::string& where) {
  double worst = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t v = 0; v < vocab; ++v) {
      const double g = got[static_cast<size_t>(r * vocab + v)], w = want_row0[r * vocab + v];
      const double d = std::abs(g - w) / (1.0 + std::abs(w));
      if (d > worst) {
        worst = d;
        std::ostringstream s;
        s << "row " << r << " token " << v << ": gpu " << g << " cpu " << w;
        where = s.str();
      }
    }
  return worst;
}

// The CPU decoder's logits [rows, vocab] as one vector.
std::vector<float> cpu_logits(const CpuDecoder& cpu, int64_t rows, int64_t vocab) {
  std::vector<float> out;
  for (int64_t r = 0; r < rows; ++r) out.insert(out.end(), cpu.logits(r), cpu.logits(r) + vocab);
  return out;
}

int64_t argmax_of(const float* x, int64_t n) {
  return static_cast<int64_t>(std::max_element(x, x + n) - x);
}

// Runs the CUDA decoder with eager steps and the CPU decoder fed the CUDA decoder's tokens (teacher
// forcing, so a difference in one token does not change what the next step sees); reports the
// worst logit difference of the prefill and of every step and how many greedy tokens agree with
// the argmax of the CPU's guided logits.
struct Comparison {
  std::vector<double> worst;  // per step: 0 = the prefill
  std::vector<std::string> where;
  int64_t tokens = 0, tokens_equal = 0;
};

template <class T>
Comparison compare_teacher_forced(const GPT<float, CPU>& cpu_model, const GPT<T, CUDA>& gpu_model,
                                  const std::vector<GenerationRequest>& requests,
                                  int64_t num_tokens) {
  Comparison out;
  const int64_t batch = static_cast<int64_t>(requests.size());
  const int64_t vocab = cpu_model.config().vocab_size;
  std::vector<generate::detail::RequestParams> params;
  const generate::detail::Conditions c =
      generate::detail::gather_conditions(cpu_model, requests, params);
  CpuDecoder cpu(cpu_model, c.rows, num_tokens);
  if (cpu_model.config().is_c2i())
    cpu.prefill_labels(c.labels.data(), c.rows);
  else
    cpu.prefill_caption(c.caption.data(), c.valid.data(), c.rows);
  CudaDecoder<T> gpu(gpu_model, batch, num_tokens);
  gpu.begin(requests);
  REQUIRE(gpu.rows() == c.rows);
  std::vector<float> guided(static_cast<size_t>(vocab));
  for (int64_t t = 0; t < num_tokens; ++t) {
    if (t > 0) {
      const std::vector<int64_t> tokens = gpu.tokens().to_vector();  // [batch, t]
      std::vector<int64_t> fed(static_cast<size_t>(c.rows));
      for (int64_t r = 0; r < c.rows; ++r)
        fed[static_cast<size_t>(r)] = tokens[static_cast<size_t>((r % batch) * t + t - 1)];
      cpu.step(fed.data());
      gpu.step_eager();
    }
    std::string where;
    const std::vector<float> want = cpu_logits(cpu, c.rows, vocab);
    out.worst.push_back(worst_difference(gpu.logits(), want.data(), c.rows, vocab, where));
    out.where.push_back(where);
    // The token the CPU would pick from its own logits (greedy requests).
    const std::vector<int64_t> tokens = gpu.tokens().to_vector();  // [batch, t + 1]
    for (int64_t b = 0; b < batch; ++b) {
      const generate::detail::RequestParams& p = params[static_cast<size_t>(b)];
      const float* cond = cpu.logits(b);
      const float* chosen = cond;
      const bool interval_on = true;  // cfg_interval -1 in these tests
      if (c.doubled && interval_on && p.cfg_scale > 1.0) {
        const float* uncond = cpu.logits(batch + b);
        for (int64_t v = 0; v < vocab; ++v)
          guided[static_cast<size_t>(v)] =
              uncond[v] + (cond[v] - uncond[v]) * static_cast<float>(p.cfg_scale);
        chosen = guided.data();
      }
      ++out.tokens;
      out.tokens_equal +=
          tokens[static_cast<size_t>(b * (t + 1) + t)] == argmax_of(chosen, vocab) ? 1 : 0;
    }
  }
  return out;
}

}  // namespace

TEST_CASE("cuda decoder: float logits equal CpuDecoder's, greedy tokens CpuGeneration's",
          "[cuda][decoder]") {
  MENTOR_REQUIRE_GPU();
  SECTION("t2i, identity rope prefix, left-padded captions, grouped KV heads, guidance") {
    const GPTConfig c = small_config(GPTModelType::TextToImage);
    Generator gen(2), gen_gpu(2);
    GPT<float, CPU> cpu(c, gen);
    randomise(cpu, 12);
    GPT<float, CUDA> gpu(c, gen_gpu);
    copy_weights(cpu, gpu);
    const std::vector<GenerationRequest> requests = caption_requests(c, 5, 21, true);
    const Comparison cmp = compare_teacher_forced(cpu, gpu, requests, 16);
    for (size_t s = 0; s < cmp.worst.size(); ++s) {
      INFO((s == 0 ? std::string("prefill") : "step " + std::to_string(s))
           << ": worst relative " << cmp.worst[s] << " at " << cmp.where[s]);
      CHECK(cmp.worst[s] < 1e-4);
    }
    CHECK(cmp.tokens_equal == cmp.tokens);
    // Generation end to end (graph replays): CpuGeneration's greedy tokens.
    const std::vector<int64_t> want = generate::generate(cpu, requests, 16).to_vector();
    CHECK(generate_cuda(gpu, requests, 16).to_vector() == want);
  }
  SECTION("c2i, zero rope prefix, null-class rows, the guidance interval") {
    const GPTConfig c = small_config(GPTModelType::ClassToImage);
    Generator gen(1), gen_gpu(1);
    GPT<float, CPU> cpu(c, gen);
    randomise(cpu, 11);
    GPT<float, CUDA> gpu(c, gen_gpu);
    copy_weights(cpu, gpu);
    const std::vector<GenerationRequest> requests = label_requests(4, true);
    const Comparison cmp = compare_teacher_forced(cpu, gpu, requests, 12);
    for (size_t s = 0; s < cmp.worst.size(); ++s) {
      INFO("step " << s << ": worst relative " << cmp.worst[s] << " at " << cmp.where[s]);
      CHECK(cmp.worst[s] < 1e-4);
    }
    CHECK(cmp.tokens_equal == cmp.tokens);
    for (const int64_t interval : {-1, 0, 4}) {
      INFO("cfg_interval " << interval);
      const std::vector<int64_t> want = generate::generate(cpu, requests, 12, interval).to_vector();
      CHECK(generate_cuda(gpu, requests, 12, interval).to_vector() == want);
    }
  }
}

TEST_CASE("cuda decoder: the device sampler draws the CPU Sampler's token", "[cuda][decoder]") {
  MENTOR_REQUIRE_GPU();
  struct Case {
    const char* name;
    SamplingParams params;
  };
  auto params = [](double temperature, int64_t top_k, double top_p, double min_p, bool greedy) {
    SamplingParams p;
    p.temperature = temperature;
    p.top_k = top_k;
    p.top_p = top_p;
    p.min_p = min_p;
    p.greedy = greedy;
    return p;
  };
  for (const int64_t vocab : {int64_t{40}, int64_t{1000}, int64_t{16384}}) {
    const std::vector<Case> cases = {
        {"plain", params(1.0, 0, 1.0, 0.0, false)},
        {"temperature 0.7", params(0.7, 0, 1.0, 0.0, false)},
        {"temperature 0 (1e-5)", params(0.0, 0, 1.0, 0.0, false)},
        {"top-k 5", params(1.0, 5, 1.0, 0.0, false)},
        {"top-k 1000", params(1.0, 1000, 1.0, 0.0, false)},
        {"top-k vocab - 1", params(1.0, vocab - 1, 1.0, 0.0, false)},
        {"top-k > vocab", params(1.0, vocab + 7, 1.0, 0.0, false)},
        {"top-p 0.9", params(1.0, 0, 0.9, 0.0, false)},
        {"top-p 0.3, temperature 1.3", params(1.3, 0, 0.3, 0.0, false)},
        {"top-p 0.01", params(1.0, 0, 0.01, 0.0, false)},
        {"top-k 50, top-p 0.8", params(0.9, 50, 0.8, 0.0, false)},
        {"min-p 0.05", params(1.0, 0, 1.0, 0.05, false)},
        {"top-k 100, top-p 0.95, min-p 0.1", params(1.0, 100, 0.95, 0.1, false)},
        {"greedy", params(1.0, 0, 1.0, 0.0, true)},
    };
    // Rows of logits: normal, quantised to steps of 0.5 (many ties, for top-k's "ties kept" and
    // top-p's order by token), with -inf entries, and one nearly flat.
    const int64_t rows = 48;
    Generator gen(static_cast<uint64_t>(vocab));
    std::vector<float> logits = Tensor<float>::randn({rows, vocab}, gen, 0.f, 2.f).to_vector();
    for (int64_t r = 0; r < rows; ++r) {
      float* row = logits.data() + r * vocab;
      if (r % 4 == 1)
        for (int64_t v = 0; v < vocab; ++v) row[v] = std::round(row[v] * 2.f) / 2.f;
      if (r % 4 == 2)
        for (int64_t v = 0; v < vocab; v += 3) row[v] = -std::numeric_limits<float>::infinity();
      if (r % 4 == 3)
        for (int64_t v = 0; v < vocab; ++v) row[v] *= 1e-3f;
    }
    Tensor<float, CUDA> logits_gpu = Tensor<float>::from_vector(logits, {rows, vocab}).to<CUDA>();
    const int64_t words = static_cast<int64_t>(
        (rows * sizeof(cuda::DecodeRequestParams) + sizeof(int64_t) - 1) / sizeof(int64_t));
    Tensor<int64_t, CUDA> params_gpu = Tensor<int64_t, CUDA>::zeros({words});
    Tensor<int64_t, CUDA> scratch = Tensor<int64_t, CUDA>::zeros(
        {static_cast<int64_t>(cuda::decode_sample_scratch_bytes(rows, vocab) / 8 + 1)});
    const int64_t stride = 300;
    Tensor<int64_t, CUDA> tokens = Tensor<int64_t, CUDA>::full({rows, stride}, -1);
    Tensor<int32_t, CUDA> status = Tensor<int32_t, CUDA>::zeros({1});
    Sampler sampler(vocab);
    for (const Case& k : cases) {
      for (const int64_t step : {int64_t{0}, int64_t{1}, int64_t{37}, int64_t{255}}) {
        std::vector<cuda::DecodeRequestParams> host(static_cast<size_t>(rows));
        for (int64_t r = 0; r < rows; ++r)
          host[static_cast<size_t>(r)] =
              device_sampling_params(k.params, 1.0, 9000 + static_cast<uint64_t>(r) * 131);
        cuda::copy_host_to_device(params_gpu.data(), host.data(),
                                  host.size() * sizeof(cuda::DecodeRequestParams));
        const Tensor<int32_t, CUDA> counter =
            Tensor<int32_t>::from_vector({static_cast<int32_t>(step)}, {1}).to<CUDA>();
        cuda::decode_sample_tokens(
            logits_gpu.data(), rows, vocab,
            reinterpret_cast<const cuda::DecodeRequestParams*>(params_gpu.data()), counter.data(),
            tokens.data(), stride, scratch.data(), status.data());
        const std::vector<int64_t> got = tokens.to<CPU>().to_vector();
        int64_t mismatches = 0;
        std::string first;
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t want =
              sampler.sample(logits.data() + r * vocab, k.params, host[size_t(r)].seed, step);
          const int64_t have = got[static_cast<size_t>(r * stride + step)];
          if (have != want) {
            if (mismatches++ == 0)
              first = "row " + std::to_string(r) + ": gpu " + std::to_string(have) + ", cpu " +
                      std::to_string(want);
          }
        }
        INFO("vocab " << vocab << ", " << k.name << ", step " << step << ": " << mismatches
                      << " of " << rows << " rows differ; first: " << first);
        CHECK(mismatches == 0);
      }
    }
    CHECK(status.to<CPU>().to_vector()[0] == 0);

    {  // a NaN logit is reported, not drawn from
      std::vector<float> bad(logits.begin(), logits.begin() + vocab);
      bad[static_cast<size_t>(vocab / 2)] = std::numeric_limits<float>::quiet_NaN();
      const Tensor<float, CUDA> bad_gpu = Tensor<float>::from_vector(bad, {1, vocab}).to<CUDA>();
      const cuda::DecodeRequestParams p = device_sampling_params(SamplingParams{}, 1.0, 5);
      cuda::copy_host_to_device(params_gpu.data(), &p, sizeof(p));
      const Tensor<int32_t, CUDA> counter = Tensor<int32_t, CUDA>::zeros({1});
      cuda::decode_sample_tokens(
          bad_gpu.data(), 1, vocab,
          reinterpret_cast<const cuda::DecodeRequestParams*>(params_gpu.data()), counter.data(),
          tokens.data(), stride, scratch.data(), status.data());
      CHECK((status.to<CPU>().to_vector()[0] & cuda::kDecodeBadLogit) != 0);
    }
  }
}

TEST_CASE("cuda decoder: bf16 logits within bf16 tolerance, greedy tokens mostly the CPU's",
          "[cuda][decoder]") {
  MENTOR_REQUIRE_GPU();
  const GPTConfig c = small_config(GPTModelType::TextToImage);
  Generator gen(3), gen_gpu(3);
  GPT<float, CPU> cpu(c, gen);
  randomise(cpu, 13);
  GPT<bf16, CUDA> gpu(c, gen_gpu);
  copy_weights(cpu, gpu);
  const std::vector<GenerationRequest> requests = caption_requests(c, 6, 22, true);
  const Comparison cmp = compare_teacher_forced(cpu, gpu, requests, 16);
  // bf16 keeps 8 significant bits (relative rounding 2^-9 per value); over two blocks of
  // rounded activations and products the logits move by a few percent of their scale.
  for (size_t s = 0; s < cmp.worst.size(); ++s) {
    INFO("step " << s << ": worst relative " << cmp.worst[s] << " at " << cmp.where[s]);
    CHECK(cmp.worst[s] < 0.1);
  }
  INFO(cmp.tokens_equal << " of " << cmp.tokens << " greedy tokens equal the CPU's argmax");
  CHECK(cmp.tokens_equal >= cmp.tokens * 8 / 10);
}

TEST_CASE("cuda decoder: graph replays equal the eager steps", "[cuda][decoder]") {
  MENTOR_REQUIRE_GPU();
  const GPTConfig c = small_config(GPTModelType::TextToImage);
  Generator gen(4), gen_gpu(4);
  GPT<float, CPU> cpu(c, gen);
  randomise(cpu, 14);
  GPT<float, CUDA> gpu(c, gen_gpu);
  copy_weights(cpu, gpu);
  CudaDecoder<float> decoder(gpu, 6, 16);
  for (const int64_t count : {int64_t{6}, int64_t{3}}) {  // a second batch shape recaptures
    INFO(count << " requests");
    const std::vector<GenerationRequest> requests = caption_requests(c, count, 31, false);
    decoder.begin(requests);
    while (decoder.produced() < 16) decoder.step_eager();
    const std::vector<int64_t> eager = decoder.tokens().to_vector();
    const std::vector<float> eager_logits = decoder.logits();
    const std::vector<float> eager_guided = decoder.guided_logits();
    decoder.begin(requests);
    while (decoder.next()) {
    }
    CHECK(decoder.graph_captured());
    CHECK(decoder.tokens().to_vector() == eager);
    CHECK(decoder.logits() == eager_logits);
    CHECK(decoder.guided_logits() == eager_guided);
    // Sampled, not greedy: the seeds matter.
    std::vector<GenerationRequest> reseeded = requests;
    for (auto& r : reseeded) r.seed += 1;
    CHECK(decoder.run(reseeded).to_vector() != eager);
    // And the sampled tokens are the CPU's wherever the logits agree to rounding: compare with
    // the CPU generation of the same requests and count (float logits are not bit-identical, so
    // a draw near a boundary may differ; random weights make that rare).
    const std::vector<int64_t> cpu_tokens = generate::generate(cpu, requests, 16).to_vector();
    int64_t equal = 0;
    for (size_t i = 0; i < cpu_tokens.size(); ++i) equal += cpu_tokens[i] == eager[i] ? 1 : 0;
    INFO(equal << " of " << cpu_tokens.size() << " sampled tokens equal the CPU's");
    CHECK(equal * 10 >= static_cast<int64_t>(cpu_tokens.size()) * 9);
  }
  {  // past num_tokens: a clear error
    decoder.begin(caption_requests(c, 2, 41, false));
    while (decoder.next()) {
    }
    REQUIRE_THROWS_WITH(decoder.step(), Catch::Contains("all 16 tokens are produced"));
  }
}

}  // namespace test_cuda_decoder
