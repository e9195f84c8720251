// The CPU decoder and the generation loop (generate/cpu_decoder.hpp, generate/generate.hpp):
// logits equal the op path's (GPT::prefill/step), greedy decoding reproduces upstream's fixture
// tokens, a request's tokens do not depend on the batch around it or on the thread count, and
// decoding allocates nothing per token.
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "alloc_counter.hpp"
#include "catch.hpp"
#include "fixture_files.hpp"
#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/generate/generate.hpp"
#include "mentor/io/safetensors.hpp"
#include "mentor/nn/state_dict.hpp"

namespace test_decoder {

using namespace mentor;
using namespace mentor::models;
using namespace mentor::generate;

namespace {

GPTConfig small_config(GPTModelType type) {
  GPTConfig c;
  c.dim = 64;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_kv_head = 2;
  c.multiple_of = 16;
  c.vocab_size = 40;  // not a multiple of the decoder's 4-row weight blocks
  c.block_size = 16;
  c.num_classes = 5;
  c.caption_dim = 20;  // not a multiple of 16 lanes
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

void check_close(const float* got, const Tensor<float>& want, int64_t row,
                 const std::string& what) {
  const std::vector<float> w = want.select(0, row).contiguous().to_vector();
  double worst = 0;
  for (size_t v = 0; v < w.size(); ++v)
    worst =
        std::max(worst, std::abs(double(got[v]) - double(w[v])) / (1.0 + std::abs(double(w[v]))));
  INFO(what << " row " << row << ": worst relative difference " << worst);
  CHECK(worst < 2e-5);
}

std::vector<GenerationRequest> caption_requests(const GPTConfig& c, int64_t count, uint64_t seed) {
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
    r.sampling.temperature = i % 2 == 0 ? 1.0 : 0.8;
    r.sampling.top_k = i % 4 == 1 ? 10 : 0;
    r.sampling.top_p = i % 4 == 2 ? 0.9 : 1.0;
    requests.push_back(r);
  }
  return requests;
}

}  // namespace

TEST_CASE("CpuDecoder logits equal GPT::prefill and GPT::step", "[generate][decoder]") {
  SECTION("c2i, zero rope prefix, null-class rows") {
    GPTConfig c = small_config(GPTModelType::ClassToImage);
    Generator gen(1);
    GPT<float, CPU> model(c, gen);
    randomise(model, 11);
    const std::vector<int64_t> labels{3, 0, 5, 5};  // 5 = the null class
    CpuDecoder decoder(model, 4, 8);
    decoder.prefill_labels(labels.data(), 4);
    model.setup_cache(4, c.cls_token_num + 8);
    Tensor<float> want = model.prefill(Tensor<int64_t>::from_vector(labels, {4}));
    for (int64_t r = 0; r < 4; ++r) check_close(decoder.logits(r), want, r, "prefill");
    Generator pick(3);
    for (int64_t i = 0; i < 7; ++i) {
      std::vector<int64_t> tokens(4);
      for (auto& t : tokens) t = static_cast<int64_t>(pick.seed++ * 2654435761u % 40);
      decoder.step(tokens.data());
      want = model.step(Tensor<int64_t>::from_vector(tokens, {4}), c.cls_token_num + i);
      for (int64_t r = 0; r < 4; ++r)
        check_close(decoder.logits(r), want, r, "step " + std::to_string(i));
    }
  }
  SECTION("t2i, identity rope prefix, left-padded captions, grouped KV heads") {
    GPTConfig c = small_config(GPTModelType::TextToImage);
    Generator gen(2);
    GPT<float, CPU> model(c, gen);
    randomise(model, 12);
    const int64_t rows = 3, prefix = c.cls_token_num;
    Generator data(5);
    Tensor<float> caption = Tensor<float>::randn({rows, prefix, c.caption_dim}, data);
    std::vector<uint8_t> valid(static_cast<size_t>(rows * prefix));
    std::vector<bool> valid_bool(valid.size());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t t = 0; t < prefix; ++t)
        valid_bool[static_cast<size_t>(r * prefix + t)] =
            valid[static_cast<size_t>(r * prefix + t)] = t >= 2 * r;  // 6, 4 and 2 real tokens
    CpuDecoder decoder(model, 4, 10);
    decoder.prefill_caption(caption.to_vector().data(), valid.data(), rows);
    model.setup_cache(rows, prefix + 10);
    Tensor<float> want =
        model.prefill(caption, Tensor<bool>::from_vector(valid_bool, {rows, prefix}));
    for (int64_t r = 0; r < rows; ++r) check_close(decoder.logits(r), want, r, "prefill");
    for (int64_t i = 0; i < 9; ++i) {
      std::vector<int64_t> tokens{i % 40, (3 * i + 1) % 40, (7 * i + 5) % 40};
      decoder.step(tokens.data());
      want = model.step(Tensor<int64_t>::from_vector(tokens, {rows}), prefix + i);
      for (int64_t r = 0; r < rows; ++r)
        check_close(decoder.logits(r), want, r, "step " + std::to_string(i));
    }
    // Past the capacity it was built for: a clear error, not a write out of bounds.
    const std::vector<int64_t> one{1, 1, 1};
    decoder.step(one.data());
    REQUIRE_THROWS_WITH(decoder.step(one.data()), Catch::Contains("beyond the decoder's capacity"));
  }
}

// Fixtures are required (tests/fixture_files.hpp): a missing file fails.
TEST_CASE("Greedy CPU generation reproduces upstream's fixture tokens", "[generate][fixtures]") {
  MENTOR_FIXTURE_TEST_OR_SKIP();
  for (const std::string key : {"llamagen_gpt_c2i", "llamagen_gpt_t2i"}) {
    for (int seed : {0, 1}) {
      const std::filesystem::path path =
          test::fixture_file("upstream", key + "_s" + std::to_string(seed) + ".safetensors");
      INFO(path.string());
      io::SafeTensorsFile file = io::SafeTensorsFile::open(path.string());
      GPTConfig config = GPTConfig::from_json(test::fixture_config("upstream", key));
      Generator gen(0);
      GPT<float, CPU> model(config, gen);
      nn::LoadOptions options;
      options.prefix = "w.";
      nn::load_state_dict(model, file, options);
      model.eval();
      for (const auto& [name, scale] :
           {std::pair<std::string, double>{"cfg1", 1.0}, {"cfg3", 3.0}}) {
        const Tensor<int64_t> want = nn::load_tensor<int64_t>(file, "out.greedy_tokens_" + name);
        const int64_t batch = want.size(0), count = want.size(1);
        std::vector<GenerationRequest> requests(static_cast<size_t>(batch));
        if (config.is_c2i()) {
          const std::vector<int64_t> labels = nn::load_tensor<int64_t>(file, "in.cond").to_vector();
          for (int64_t b = 0; b < batch; ++b) requests[size_t(b)].class_label = labels[size_t(b)];
        } else {
          const Tensor<float> cond = nn::load_tensor<float>(file, "in.cond");
          const Tensor<float> mask = nn::load_tensor<float>(file, "in.emb_mask");
          for (int64_t b = 0; b < batch; ++b) {
            requests[size_t(b)].caption = cond.select(0, b).contiguous();
            std::vector<bool> flags;
            for (float v : mask.select(0, b).contiguous().to_vector()) flags.push_back(v != 0.0f);
            requests[size_t(b)].emb_mask =
                Tensor<bool>::from_vector(flags, {static_cast<int64_t>(flags.size())});
          }
        }
        for (auto& r : requests) {
          r.cfg_scale = scale;
          r.sampling.greedy = true;
        }
        INFO(name);
        CHECK(generate::generate(model, requests, count).to_vector() == want.to_vector());
      }
    }
  }
}

TEST_CASE("A request's tokens are the same alone and inside a batch of 8", "[generate][seeds]") {
  GPTConfig c = small_config(GPTModelType::TextToImage);
  Generator gen(4);
  GPT<float, CPU> model(c, gen);
  randomise(model, 14);
  const std::vector<GenerationRequest> requests = caption_requests(c, 8, 21);
  const std::vector<int64_t> batch = generate::generate(model, requests, 16).to_vector();
  for (int64_t i = 0; i < 8; ++i) {
    INFO("request " << i << " (cfg " << requests[size_t(i)].cfg_scale << ")");
    const std::vector<int64_t> alone =
        generate::generate(model, {requests[size_t(i)]}, 16).to_vector();
    CHECK(alone == std::vector<int64_t>(batch.begin() + i * 16, batch.begin() + (i + 1) * 16));
  }
  // The seed matters, and sampling is not greedy in disguise.
  std::vector<GenerationRequest> reseeded = requests;
  for (auto& r : reseeded) r.seed += 1;
  CHECK(generate::generate(model, reseeded, 16).to_vector() != batch);

  SECTION("and with one thread or two") {
    const int threads = cpu::num_threads();
    cpu::set_num_threads(1);
    const std::vector<int64_t> one = generate::generate(model, requests, 16).to_vector();
    cpu::set_num_threads(2);
    const std::vector<int64_t> two = generate::generate(model, requests, 16).to_vector();
    cpu::set_num_threads(threads);
    CHECK(one == batch);
    CHECK(two == batch);
  }
  SECTION("c2i with per-request guidance and the cfg interval") {
    GPTConfig cc = small_config(GPTModelType::ClassToImage);
    GPT<float, CPU> c2i(cc, gen);
    randomise(c2i, 15);
    std::vector<GenerationRequest> labels(5);
    for (int64_t i = 0; i < 5; ++i) {
      labels[size_t(i)].class_label = i;
      labels[size_t(i)].cfg_scale = 1.0 + double(i);
      labels[size_t(i)].seed = 77 + uint64_t(i);
    }
    const std::vector<int64_t> all = generate::generate(c2i, labels, 12, 4).to_vector();
    for (int64_t i = 0; i < 5; ++i) {
      const std::vector<int64_t> alone =
          generate::generate(c2i, {labels[size_t(i)]}, 12, 4).to_vector();
      CHECK(alone == std::vector<int64_t>(all.begin() + i * 12, all.begin() + (i + 1) * 12));
    }
  }
}

TEST_CASE("Decoding allocates nothing per token", "[generate][allocation]") {
  GPTConfig c = small_config(GPTModelType::TextToImage);
  Generator gen(6);
  GPT<float, CPU> model(c, gen);
  randomise(model, 16);
  const std::vector<GenerationRequest> requests = caption_requests(c, 4, 31);
  for (int threads : {1, 2}) {
    const int before_threads = cpu::num_threads();
    cpu::set_num_threads(threads);
    CpuGeneration generation(model, 4, 16);
    generation.begin(requests);
    generation.next();  // a first step: thread pools and lazy runtime state start here
    const int64_t before = mentor_test::allocations();
    int64_t steps = 0;
    while (generation.next()) ++steps;
    const int64_t after = mentor_test::allocations();
    cpu::set_num_threads(before_threads);
    INFO(threads << " thread(s), " << steps << " steps");
    CHECK(steps == 13);
    CHECK(after - before == 0);
    // The counter counts: tokens() allocates its result.
    const int64_t mark = mentor_test::allocations();
    (void)generation.tokens();
    CHECK(mentor_test::allocations() > mark);
  }
}

TEST_CASE("Generation rejects bad requests with a clear message", "[generate][errors]") {
  GPTConfig c = small_config(GPTModelType::TextToImage);
  Generator gen(7);
  GPT<float, CPU> model(c, gen);
  randomise(model, 17);
  std::vector<GenerationRequest> requests = caption_requests(c, 2, 41);
  CpuGeneration generation(model, 2, 4);
  SECTION("too many requests") {
    requests.push_back(requests[0]);
    REQUIRE_THROWS_WITH(generation.begin(requests),
                        Catch::Contains("3 requests outside [1, max_requests 2]"));
  }
  SECTION("caption of the wrong length") {
    requests[1].caption = Tensor<float>::zeros({c.cls_token_num - 1, c.caption_dim});
    REQUIRE_THROWS_WITH(generation.begin(requests),
                        Catch::Contains("request 1 has caption features [5, 20]"));
  }
  SECTION("negative guidance scale") {
    requests[0].cfg_scale = -2;
    REQUIRE_THROWS_WITH(generation.begin(requests), Catch::Contains("cfg_scale -2"));
  }
  SECTION("class label out of range") {
    GPTConfig cc = small_config(GPTModelType::ClassToImage);
    GPT<float, CPU> c2i(cc, gen);
    GenerationRequest r;
    r.class_label = 9;
    REQUIRE_THROWS_WITH(generate::generate(c2i, {r}, 4),
                        Catch::Contains("class label 9 outside [0, 5)"));
  }
}

}  // namespace test_decoder
