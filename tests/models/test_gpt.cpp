// The LlamaGen GPT: upstream fixtures (llamagen_gpt_{c2i,t2i}_s{0,1}), parameter counts of the
// named configs against LlamaGen's code comments (mentor-system.md §2.1) from shapes only, the
// KV-cached generation against a plain full-sequence recomputation written here, the
// per-sample-weighted loss against a direct computation, and the error paths.
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <vector>

#include "catch.hpp"
#include "fixture_files.hpp"
#include "mentor/generate/greedy.hpp"
#include "mentor/models/gpt.hpp"
#include "mentor/models/multimodal_encoder.hpp"
#include "verify/verify_gpt.hpp"

namespace test_gpt {

using namespace mentor;
using namespace mentor::models;
using namespace mentor::verify;

namespace {

#ifdef MENTOR_CATCH3
auto has_text(const std::string& text) { return Catch::Matchers::ContainsSubstring(text); }
#else
auto has_text(const std::string& text) { return Catch::Contains(text); }
#endif

nlohmann::json fixture_config(const std::string& key) {
  return test::fixture_config("upstream", key);
}

// A small model of either type with random (not upstream-initialised) weights everywhere, the
// output head included (upstream zero-initialises it, which would make every logit 0).
GPTConfig small_config(GPTModelType type) {
  GPTConfig c;
  c.dim = 32;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_kv_head = 2;
  c.multiple_of = 16;
  c.vocab_size = 24;
  c.block_size = 9;
  c.num_classes = 5;
  c.caption_dim = 12;
  c.model_type = type;
  c.cls_token_num = type == GPTModelType::ClassToImage ? 1 : 6;
  c.rope_prefix = type == GPTModelType::ClassToImage ? RopePrefix::Zero : RopePrefix::Identity;
  c.token_dropout_p = c.resid_dropout_p = c.ffn_dropout_p = 0.0;
  return c;
}

template <class T>
void randomise(GPT<T, CPU>& model, uint64_t seed) {
  Generator gen(seed);
  NoGradGuard no_grad;
  for (auto& [name, t] : model.state())
    t->copy_(Tensor<float>::randn(t->shape(), gen, 0.f, 0.3f).template to<T>());
}

// Upstream's full-sequence computation of the next token's logits (no cache): the condition
// embeddings followed by the tokens generated so far, causal mask with the padded prefix columns
// off and the diagonal on, logits of the last position.
template <class T, class Cond>
Tensor<T> full_sequence_logits(GPT<T, CPU>& model, const Cond& cond, const Tensor<bool>& emb_mask,
                               const std::vector<std::vector<int64_t>>& tokens) {
  const GPTConfig& c = model.config();
  const int64_t batch = static_cast<int64_t>(tokens.size());
  const int64_t n = static_cast<int64_t>(tokens[0].size());
  const int64_t seq = c.cls_token_num + n;
  Tensor<T> h = model.embed_condition(cond);
  if (n > 0) {
    std::vector<int64_t> flat;
    for (const auto& row : tokens) flat.insert(flat.end(), row.begin(), row.end());
    h = concat(std::vector<Tensor<T>>{h, model.tok_embeddings(
                                             Tensor<int64_t>::from_vector(flat, {batch, n}))},
               1);
  }
  std::vector<bool> m(static_cast<size_t>(batch * seq * seq));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < seq; ++i)
      for (int64_t j = 0; j < seq; ++j) {
        bool valid = j >= c.cls_token_num || !emb_mask.defined() || emb_mask.at({b, j});
        m[static_cast<size_t>((b * seq + i) * seq + j)] = (j <= i && valid) || i == j;
      }
  AttnMask<CPU> mask = AttnMask<CPU>::from(Tensor<bool>::from_vector(m, {batch, 1, seq, seq}));
  Tensor<float> rope = model.freqs_cis.narrow(0, 0, seq);
  for (auto& layer : model.layers) h = layer(h, rope, mask);
  Tensor<T> logits = model.output(model.norm(h));
  return logits.select(1, seq - 1);
}

// Greedy guided generation by full recomputation (independent of the KV cache and step masks).
template <class T, class Cond>
std::vector<std::vector<int64_t>> reference_greedy(GPT<T, CPU>& model, const Cond& cond,
                                                   const Cond& uncond, const Tensor<bool>& emb_mask,
                                                   int64_t count, double scale,
                                                   int64_t cfg_interval = -1) {
  NoGradGuard no_grad;
  const int64_t batch = cond.size(0);
  std::vector<std::vector<int64_t>> tokens(static_cast<size_t>(batch));
  for (int64_t step = 0; step < count; ++step) {
    auto c = full_sequence_logits(model, cond, emb_mask, tokens).to_vector();
    std::vector<T> u;
    if (scale > 1.0) u = full_sequence_logits(model, uncond, emb_mask, tokens).to_vector();
    const int64_t vocab = model.config().vocab_size;
    for (int64_t b = 0; b < batch; ++b) {
      int64_t best = 0;
      double best_value = -std::numeric_limits<double>::infinity();
      for (int64_t v = 0; v < vocab; ++v) {
        double cv = c[static_cast<size_t>(b * vocab + v)];
        double value = cv;
        // Decode step i = step - 1 after the prefill; upstream stops guiding once i > cfg_interval.
        const bool guided = !(cfg_interval > -1 && step - 1 > cfg_interval);
        if (scale > 1.0 && guided) {
          double uv = u[static_cast<size_t>(b * vocab + v)];
          value = uv + (cv - uv) * scale;
        }
        if (value > best_value) best_value = value, best = v;
      }
      tokens[static_cast<size_t>(b)].push_back(best);
    }
  }
  return tokens;
}

std::vector<std::vector<int64_t>> rows_of(const Tensor<int64_t>& t) {
  std::vector<std::vector<int64_t>> rows(static_cast<size_t>(t.size(0)));
  for (int64_t b = 0; b < t.size(0); ++b)
    for (int64_t i = 0; i < t.size(1); ++i) rows[static_cast<size_t>(b)].push_back(t.at({b, i}));
  return rows;
}

}  // namespace

// Fixtures are required (tests/fixture_files.hpp): a missing file fails.
TEST_CASE("GPT matches the upstream LlamaGen fixtures (float32, CPU)", "[gpt][fixtures]") {
  MENTOR_FIXTURE_TEST_OR_SKIP();
  for (const std::string key : {"llamagen_gpt_c2i", "llamagen_gpt_t2i"}) {
    for (int seed : {0, 1}) {
      std::filesystem::path path =
          test::fixture_file("upstream", key + "_s" + std::to_string(seed) + ".safetensors");
      io::SafeTensorsFile file = io::SafeTensorsFile::open(path.string());
      VerifyReport report = verify_gpt<float, CPU>(file, fixture_config(key));
      report.print(std::cout);
      INFO(path.string());
      for (const auto& c : report.comparisons) {
        INFO(c.name << " error " << c.error << " tolerance " << c.tolerance);
        CHECK(c.pass());
      }
      // Every parameter gradient, both outputs and both token sequences were compared.
      std::vector<std::string> names;
      for (const auto& c : report.comparisons) names.push_back(c.name);
      int grads = 0;
      for (const auto& name : file.keys()) grads += name.rfind("grad.", 0) == 0;
      CHECK(static_cast<int>(names.size()) == grads + 4);
      REQUIRE(report.pass());
    }
  }
}

// bf16 (8 significant bits per stored activation; accumulation in float): logits, loss and every
// gradient within the bf16 tolerances of verify.hpp; the greedy tokens are generated but not
// required (one rounded argmax changes every later token).
TEST_CASE("GPT in bf16 matches the upstream LlamaGen fixtures within bf16 tolerances",
          "[gpt][fixtures][bf16]") {
  MENTOR_FIXTURE_TEST_OR_SKIP();
  for (const std::string key : {"llamagen_gpt_c2i", "llamagen_gpt_t2i"}) {
    std::filesystem::path path = test::fixture_file("upstream", key + "_s0.safetensors");
    io::SafeTensorsFile file = io::SafeTensorsFile::open(path.string());
    VerifyReport report = verify_gpt<bf16, CPU>(file, fixture_config(key));
    report.print(std::cout);
    INFO(path.string());
    for (const auto& c : report.comparisons) {
      INFO(c.name << " error " << c.error << " tolerance " << c.tolerance);
      CHECK(c.pass());
    }
    CHECK(report.not_compared.size() == 2);  // the two token sequences
    REQUIRE(report.pass());
  }
}

TEST_CASE("GPT presets have upstream's parameter counts", "[gpt][config]") {
  // mentor-system.md §2.1 (= the comments of upstream's GPT_* constructors), class-conditional,
  // vocabulary 16384, 1000 classes + the null class.
  struct Expected {
    const char* name;
    int64_t layers, dim, heads, ffn;
    double count, unit;  // count in units, rounded as upstream states it
  };
  const Expected table[] = {
      {"GPT-B", 12, 768, 12, 2048, 111, 1e6},     {"GPT-L", 24, 1024, 16, 2816, 343, 1e6},
      {"GPT-XL", 36, 1280, 20, 3584, 775, 1e6},   {"GPT-XXL", 48, 1536, 24, 4096, 1.4, 1e9},
      {"GPT-XXXL", 48, 2560, 40, 6912, 3.9, 1e9}, {"GPT-1B", 22, 2048, 32, 5632, 1.2, 1e9},
      {"GPT-3B", 24, 3200, 32, 8704, 3.1, 1e9},   {"GPT-7B", 32, 4096, 32, 11008, 6.6, 1e9}};
  for (const auto& e : table) {
    INFO(e.name);
    GPTConfig c = GPTConfig::preset(e.name);
    CHECK(c.n_layer == e.layers);
    CHECK(c.dim == e.dim);
    CHECK(c.n_head == e.heads);
    CHECK(c.ffn_hidden_dim() == e.ffn);
    // Independent count: embeddings, label table, per layer wqkv + wo + 3 FFN matrices + 2 norms,
    // final norm and head.
    const int64_t d = e.dim, h = e.ffn;
    const int64_t by_hand =
        16384 * d + 1001 * d + e.layers * (4 * d * d + 3 * d * h + 2 * d) + d + 16384 * d;
    CHECK(gpt_parameter_count(c) == by_hand);
    const double in_units = static_cast<double>(gpt_parameter_count(c)) / e.unit;
    const double step = e.unit == 1e6 ? 1.0 : 0.1;
    CHECK(std::abs(in_units - e.count) <= step / 2);
  }
  // GPT-XL in MENTOR's text-conditional mode: ≈778M (cap_proj 2048 -> 1280 -> 1280 instead of the
  // label table).
  GPTConfig xl = GPTConfig::preset("GPT-XL");
  xl.model_type = GPTModelType::TextToImage;
  xl.cls_token_num = 512;
  xl.block_size = 1024;
  CHECK(std::llround(gpt_parameter_count(xl) / 1e6) == 778);
}

TEST_CASE("GPT parameter_shapes lists exactly the module's parameters", "[gpt][config]") {
  for (auto type : {GPTModelType::ClassToImage, GPTModelType::TextToImage}) {
    GPTConfig c = small_config(type);
    Generator gen(3);
    GPT<float> model(c, gen);
    auto expected = gpt_parameter_shapes(c);
    auto params = model.named_parameters();
    REQUIRE(params.size() == expected.size());
    for (size_t i = 0; i < params.size(); ++i) {
      CHECK(params[i].first == expected[i].first);
      CHECK(params[i].second->shape() == expected[i].second);
    }
    // The t2i buffer is state but not a parameter.
    auto buffers = model.named_buffers();
    if (type == GPTModelType::TextToImage) {
      REQUIRE(buffers.size() == 1);
      CHECK(buffers[0].first == "cls_embedding.uncond_embedding");
      CHECK(buffers[0].second->shape() == Shape{c.cls_token_num, c.caption_dim});
    } else {
      CHECK(buffers.empty());
    }
    // Upstream's initialisation: zero head, unit norms.
    for (float v : model.output.weight.to_vector()) REQUIRE(v == 0.0f);
    for (float v : model.norm.weight.to_vector()) REQUIRE(v == 1.0f);
  }
}

TEST_CASE("GPTConfig reads configs.json entries and rejects bad ones", "[gpt][config]") {
  nlohmann::json j = {{"dim", 64},
                      {"n_layer", 2},
                      {"n_head", 4},
                      {"multiple_of", 32},
                      {"vocab_size", 64},
                      {"block_size", 16},
                      {"caption_dim", 16},
                      {"cls_token_num", 120},
                      {"model_type", "t2i"},
                      {"rope_prefix", "identity"},
                      {"token_dropout_p", 0.0}};
  GPTConfig c = GPTConfig::from_json(j);
  CHECK(c.dim == 64);
  CHECK(c.ffn_hidden_dim() == 192);  // int(2 * 256 / 3) = 170 -> multiple of 32
  CHECK(c.model_type == GPTModelType::TextToImage);
  CHECK(c.rope_prefix == RopePrefix::Identity);
  CHECK(c.token_dropout_p == 0.0);
  CHECK(c.resid_dropout_p == 0.1);  // upstream default
  GPTConfig round = GPTConfig::from_json(c.to_json());
  CHECK(round.to_json() == c.to_json());

  GPTConfig xl = GPTConfig::from_json({{"gpt_model", "GPT-XL"},
                                       {"model_type", "t2i"},
                                       {"cls_token_num", 512},
                                       {"block_size", 1024}});
  CHECK(xl.dim == 1280);
  CHECK(xl.n_layer == 36);
  CHECK(xl.grid_size() == 32);

  auto with = [&](const char* key, nlohmann::json value) {
    nlohmann::json k = j;
    k[key] = value;
    return k;
  };
  CHECK_THROWS_WITH(GPTConfig::from_json(with("model_type", "i2i")), has_text("model_type 'i2i'"));
  CHECK_THROWS_WITH(GPTConfig::from_json(with("rope_prefix", "half")),
                    has_text("rope_prefix 'half'"));
  CHECK_THROWS_WITH(GPTConfig::from_json(with("block_size", 15)), has_text("block_size 15"));
  CHECK_THROWS_WITH(GPTConfig::from_json(with("n_head", 3)), has_text("n_head 3"));
  CHECK_THROWS_WITH(GPTConfig::from_json(with("dim", "wide")), has_text("GPTConfig::from_json"));
  CHECK_THROWS_WITH(GPTConfig::from_json(with("attn_dropout_p", 0.1)), has_text("attn_dropout_p"));
  CHECK_THROWS_WITH(GPTConfig::preset("GPT-Z"), has_text("unknown model 'GPT-Z'"));
}

TEST_CASE("GPT KV-cached greedy generation equals full recomputation", "[gpt][generate]") {
  SECTION("c2i, zero rope prefix, guidance 1 and 2.5") {
    GPTConfig c = small_config(GPTModelType::ClassToImage);
    Generator gen(1);
    GPT<double> model(c, gen);
    randomise(model, 11);
    model.eval();
    Tensor<int64_t> labels = Tensor<int64_t>::from_vector({3, 0, 4}, {3});
    Tensor<int64_t> null_labels = Tensor<int64_t>::full({3}, c.num_classes);
    for (double scale : {1.0, 2.5}) {
      INFO("cfg " << scale);
      auto got = generate::generate_greedy(model, labels, Tensor<bool>(), 9, scale);
      CHECK(rows_of(got) == reference_greedy(model, labels, null_labels, Tensor<bool>(), 9, scale));
    }
    auto interval = generate::generate_greedy(model, labels, Tensor<bool>(), 9, 4.0, 3);
    CHECK(rows_of(interval) ==
          reference_greedy(model, labels, null_labels, Tensor<bool>(), 9, 4.0, 3));
    CHECK(model.cache_capacity() == 0);  // released
  }
  SECTION("t2i, identity rope prefix, left-padded captions") {
    GPTConfig c = small_config(GPTModelType::TextToImage);
    Generator gen(2);
    GPT<double> model(c, gen);
    randomise(model, 12);
    model.eval();
    const int64_t batch = 2, prefix = c.cls_token_num;
    Generator data(5);
    Tensor<double> caption =
        Tensor<float>::randn({batch, prefix, c.caption_dim}, data).to<double>();
    std::vector<bool> valid(static_cast<size_t>(batch * prefix));
    for (int64_t j = 0; j < prefix; ++j) {
      valid[static_cast<size_t>(j)] = j >= 2;           // sample 0: last 4 valid
      valid[static_cast<size_t>(prefix + j)] = j >= 5;  // sample 1: last 1 valid
    }
    Tensor<bool> emb_mask = Tensor<bool>::from_vector(valid, {batch, prefix});
    Tensor<double> uncond = model.caption_embedder().unconditional(batch);
    for (double scale : {1.0, 3.0}) {
      INFO("cfg " << scale);
      auto got = generate::generate_greedy(model, caption, emb_mask, 9, scale);
      CHECK(rows_of(got) == reference_greedy(model, caption, uncond, emb_mask, 9, scale));
    }
  }
}

TEST_CASE("GPT prefill and step logits equal the training forward's", "[gpt][generate]") {
  // Teacher forcing: with the full token sequence fed, the cached path's logits at every position
  // are the training forward's (eval mode, no dropout), for both rope prefixes.
  for (auto type : {GPTModelType::ClassToImage, GPTModelType::TextToImage}) {
    GPTConfig c = small_config(type);
    Generator gen(4);
    GPT<double> model(c, gen);
    randomise(model, 21);
    model.eval();
    const int64_t batch = 2, length = c.block_size;
    std::vector<int64_t> flat;
    for (int64_t i = 0; i < batch * length; ++i) flat.push_back((i * 7 + 3) % c.vocab_size);
    Tensor<int64_t> tokens = Tensor<int64_t>::from_vector(flat, {batch, length});
    Tensor<double> expected, first;
    Tensor<double> caption;
    Tensor<int64_t> labels = Tensor<int64_t>::from_vector({1, 4}, {2});
    model.setup_cache(batch, c.cls_token_num + length);
    CHECK(model.cache_capacity() % 8 == 0);
    if (type == GPTModelType::ClassToImage) {
      expected = model.forward_train(tokens.narrow(1, 0, length - 1), labels);
      first = model.prefill(labels).to<double>();
    } else {
      Generator data(6);
      caption = Tensor<float>::randn({batch, c.cls_token_num, c.caption_dim}, data).to<double>();
      expected = model.forward_train(tokens.narrow(1, 0, length - 1), caption);
      first = model.prefill(caption).to<double>();
    }
    auto close = [](const Tensor<double>& a, const Tensor<double>& b) {
      auto va = a.to_vector(), vb = b.to_vector();
      double num = 0, den = 0;
      for (size_t i = 0; i < va.size(); ++i)
        num += (va[i] - vb[i]) * (va[i] - vb[i]), den += vb[i] * vb[i];
      return std::sqrt(num / den);
    };
    // prefill and step return float logits (upstream casts them): equal to float rounding.
    const double float_rounding = 1e-7;
    CHECK(close(first, expected.select(1, 0).contiguous()) < float_rounding);
    for (int64_t i = 0; i + 1 < length; ++i) {
      Tensor<double> got =
          model.step(tokens.select(1, i).contiguous(), c.cls_token_num + i).to<double>();
      CHECK(close(got, expected.select(1, i + 1).contiguous()) < float_rounding);
    }
  }
}

TEST_CASE("GPT loss: mean and per-sample-weighted cross-entropy", "[gpt][loss]") {
  GPTConfig c = small_config(GPTModelType::ClassToImage);
  Generator gen(7);
  GPT<double> model(c, gen);
  randomise(model, 31);
  const int64_t batch = 3, length = c.block_size;
  std::vector<int64_t> flat;
  for (int64_t i = 0; i < batch * length; ++i) flat.push_back((i * 5 + 1) % c.vocab_size);
  Tensor<int64_t> tokens = Tensor<int64_t>::from_vector(flat, {batch, length});
  Tensor<int64_t> labels = Tensor<int64_t>::from_vector({0, 2, 4}, {batch});
  Tensor<double> logits = model.forward_train(tokens.narrow(1, 0, length - 1), labels);
  REQUIRE(logits.shape() == Shape{batch, length, c.vocab_size});
  // Per-token cross-entropy by hand.
  auto l = logits.contiguous().to_vector();
  std::vector<double> ce(static_cast<size_t>(batch * length));
  for (int64_t r = 0; r < batch * length; ++r) {
    double m = -1e300, s = 0;
    for (int64_t v = 0; v < c.vocab_size; ++v)
      m = std::max(m, l[static_cast<size_t>(r * c.vocab_size + v)]);
    for (int64_t v = 0; v < c.vocab_size; ++v)
      s += std::exp(l[static_cast<size_t>(r * c.vocab_size + v)] - m);
    ce[static_cast<size_t>(r)] =
        m + std::log(s) - l[static_cast<size_t>(r * c.vocab_size + flat[static_cast<size_t>(r)])];
  }
  double mean = 0;
  for (double x : ce) mean += x;
  mean /= static_cast<double>(ce.size());
  CHECK(model.loss(logits, tokens).item() == Approx(mean).epsilon(1e-12));
  // valid = [0, 2, 4] (weights, as the labels converted): sum_b w_b sum_l CE / (sum_b w_b L).
  double weighted = 0;
  const double weights[] = {0, 2, 4};
  for (int64_t r = 0; r < batch * length; ++r)
    weighted += weights[r / length] * ce[static_cast<size_t>(r)];
  weighted /= 6.0 * static_cast<double>(length);
  Tensor<double> valid = labels.to<double>();
  CHECK(model.loss(logits, tokens, valid).item() == Approx(weighted).epsilon(1e-12));
}

TEST_CASE("GPT guidance dropout replaces the condition", "[gpt][dropout]") {
  SECTION("c2i: dropped samples get the null class") {
    GPTConfig c = small_config(GPTModelType::ClassToImage);
    Generator gen(8);
    GPT<double> model(c, gen);
    Tensor<int64_t> labels = Tensor<int64_t>::from_vector({1, 2}, {2});
    Tensor<bool> drop = Tensor<bool>::from_vector({false, true}, {2});
    auto emb = model.embed_condition(labels, drop).contiguous().to_vector();
    auto table = model.label_embedder().embedding_table.weight.to_vector();
    for (int64_t k = 0; k < c.dim; ++k) {
      CHECK(emb[static_cast<size_t>(k)] == table[static_cast<size_t>(1 * c.dim + k)]);
      CHECK(emb[static_cast<size_t>(c.dim + k)] ==
            table[static_cast<size_t>(c.num_classes * c.dim + k)]);
    }
  }
  SECTION("t2i: dropped samples get uncond_embedding before cap_proj") {
    GPTConfig c = small_config(GPTModelType::TextToImage);
    Generator gen(9);
    GPT<double> model(c, gen);
    Generator data(1);
    Tensor<double> caption =
        Tensor<float>::randn({2, c.cls_token_num, c.caption_dim}, data).to<double>();
    Tensor<bool> drop = Tensor<bool>::from_vector({true, false}, {2});
    auto got = model.embed_condition(caption, drop).contiguous().to_vector();
    auto& embedder = model.caption_embedder();
    auto dropped = embedder.cap_proj(embedder.uncond_embedding).to_vector();
    auto kept = embedder.cap_proj(caption.select(0, 1)).contiguous().to_vector();
    const size_t n = dropped.size();
    for (size_t i = 0; i < n; ++i) {
      // Same products, other GEMM blocking: equal to rounding.
      CHECK(got[i] == Approx(dropped[i]).epsilon(1e-12).margin(1e-15));
      CHECK(got[n + i] == Approx(kept[i]).epsilon(1e-12).margin(1e-15));
    }
  }
  SECTION("training mode draws drops with class_dropout_prob") {
    GPTConfig c = small_config(GPTModelType::ClassToImage);
    c.class_dropout_prob = 1.0;
    Generator gen(10);
    GPT<double> model(c, gen);
    Tensor<int64_t> labels = Tensor<int64_t>::from_vector({1, 2}, {2});
    auto null_row =
        model.label_embedder().embedding_table.weight.select(0, c.num_classes).to_vector();
    auto emb =
        model.embed_condition(labels, {}, /*training_dropout=*/true).contiguous().to_vector();
    for (int64_t k = 0; k < c.dim; ++k)
      CHECK(emb[static_cast<size_t>(c.dim + k)] == null_row[static_cast<size_t>(k)]);
  }
}

TEST_CASE("GPT dropouts act in training mode only, from dropout_generator", "[gpt][dropout]") {
  GPTConfig c = small_config(GPTModelType::TextToImage);
  c.token_dropout_p = 0.2;
  c.resid_dropout_p = 0.3;
  c.ffn_dropout_p = 0.1;
  c.class_dropout_prob = 0.5;
  Generator gen(13);
  GPT<double> model(c, gen);
  randomise(model, 41);
  Generator data(2);
  Tensor<double> caption =
      Tensor<float>::randn({2, c.cls_token_num, c.caption_dim}, data).to<double>();
  Tensor<int64_t> idx = Tensor<int64_t>::zeros({2, 4});
  model.eval();
  auto eval_logits = model.forward_train(idx, caption).to_vector();
  model.train();
  const Generator start = model.dropout_generator;
  auto train_a = model.forward_train(idx, caption).to_vector();
  model.dropout_generator = start;
  auto train_b = model.forward_train(idx, caption).to_vector();
  auto train_c = model.forward_train(idx, caption).to_vector();
  CHECK(train_a == train_b);  // the same stream gives the same masks
  CHECK(train_a != train_c);  // the stream advances
  CHECK(train_a != eval_logits);
  model.eval();
  CHECK(model.forward_train(idx, caption).to_vector() == eval_logits);
}

TEST_CASE("GPT reports misuse clearly", "[gpt][errors]") {
  GPTConfig c2i = small_config(GPTModelType::ClassToImage);
  GPTConfig t2i = small_config(GPTModelType::TextToImage);
  Generator gen(12);
  GPT<float> class_model(c2i, gen);
  GPT<float> text_model(t2i, gen);
  Tensor<int64_t> labels = Tensor<int64_t>::from_vector({1, 2}, {2});
  Tensor<float> caption = Tensor<float>::zeros({2, t2i.cls_token_num, t2i.caption_dim});
  Tensor<int64_t> idx = Tensor<int64_t>::zeros({2, 4});

  CHECK_THROWS_WITH(text_model.forward_train(idx, labels), has_text("class labels given to a t2i"));
  CHECK_THROWS_WITH(class_model.forward_train(idx, caption), has_text("given to a c2i model"));
  CHECK_THROWS_WITH(class_model.forward_train(Tensor<int64_t>::zeros({2, 12}), labels),
                    has_text("exceed block_size 9"));
  CHECK_THROWS_WITH(text_model.forward_train(idx, caption, Tensor<bool>::ones({2, 5, 5})),
                    has_text("is not [2, 10, 10]"));
  CHECK_THROWS_WITH(class_model.prefill(labels), has_text("no KV cache"));
  class_model.setup_cache(2, 8);
  CHECK_THROWS_WITH(class_model.step(Tensor<int64_t>::zeros({2}), 0), has_text("condition prefix"));
  CHECK_THROWS_WITH(class_model.step(Tensor<int64_t>::zeros({2}), 8), has_text("cache capacity 8"));
  CHECK_THROWS_WITH(class_model.prefill(Tensor<int64_t>::from_vector({1, 2, 3}, {3})),
                    has_text("exceeds the cache batch 2"));
  CHECK_THROWS_WITH(class_model.prefill(Tensor<int64_t>::from_vector({1, 9}, {2})),
                    has_text("9"));  // label out of range (null class is 5)
  text_model.setup_cache(2, 10);
  CHECK_THROWS_WITH(text_model.prefill(caption, Tensor<bool>::ones({2, 3})),
                    has_text("emb_mask [2, 3]"));
  CHECK_THROWS_WITH(generate::generate_greedy(class_model, labels, Tensor<bool>(), 10, 2.0),
                    has_text("num_tokens 10"));
  GPTConfig no_null = c2i;
  no_null.class_dropout_prob = 0;
  GPT<float> plain(no_null, gen);
  CHECK(plain.label_embedder().embedding_table.weight.size(0) == no_null.num_classes);
  CHECK_THROWS_WITH(generate::generate_greedy(plain, labels, Tensor<bool>(), 4, 2.0),
                    has_text("null class"));
}

TEST_CASE("GPT: one rule for the caption length on every path", "[gpt][errors][generate]") {
  GPTConfig c = small_config(GPTModelType::TextToImage);  // cls_token_num 6
  c.class_dropout_prob = 0.5;
  Generator gen(21);
  GPT<double> model(c, gen);
  randomise(model, 22);
  Generator data(23);
  const int64_t batch = 2, slots = c.cls_token_num;
  Tensor<int64_t> idx = Tensor<int64_t>::zeros({batch, 4});
  for (int64_t rows : {slots - 2, slots + 3}) {
    INFO("caption of " << rows << " rows");
    Tensor<double> caption = Tensor<float>::randn({batch, rows, c.caption_dim}, data).to<double>();
    auto names_both = [&](const std::string& where) {
      return has_text(where + ": the caption has " + std::to_string(rows) +
                      " token rows but the model takes exactly cls_token_num = 6");
    };
    model.train();
    CHECK_THROWS_WITH(model.forward_train(idx, caption), names_both("GPT"));
    model.eval();
    CHECK_THROWS_WITH(model.forward_train(idx, caption), names_both("GPT"));
    CHECK_THROWS_WITH(model.forward_train(idx, caption), has_text("models::left_pad_condition"));
    model.setup_cache(batch, slots + 4);
    CHECK_THROWS_WITH(model.prefill(caption), names_both("GPT"));
    model.clear_cache();
    for (double scale : {1.0, 3.0}) {
      INFO("cfg " << scale);
      CHECK_THROWS_WITH(generate::generate_greedy(model, caption, Tensor<bool>(), 4, scale),
                        names_both("generate_greedy"));
      CHECK(model.cache_capacity() == 0);
    }
    // The documented helper brings it to cls_token_num rows; every path then takes it, and the
    // result equals the prefix built by hand: the first min(rows, slots) rows, right-aligned.
    ConditionPrefix<double, CPU> prefix = left_pad_condition(caption, Tensor<bool>(), slots);
    REQUIRE(prefix.embeddings.shape() == Shape{batch, slots, c.caption_dim});
    const int64_t kept = std::min(rows, slots);
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t t = 0; t < slots; ++t) {
        const bool real = t >= slots - kept;
        CHECK(prefix.mask.at({b, t}) == real);
        for (int64_t k = 0; k < c.caption_dim; ++k)
          CHECK(prefix.embeddings.at({b, t, k}) ==
                (real ? caption.at({b, t - (slots - kept), k}) : 0.0));
      }
    model.train();
    CHECK(model.forward_train(idx, prefix.embeddings).shape() == Shape{batch, 5, c.vocab_size});
    model.eval();
    CHECK(model.forward_train(idx, prefix.embeddings).shape() == Shape{batch, 5, c.vocab_size});
    for (double scale : {1.0, 3.0})
      CHECK(generate::generate_greedy(model, prefix.embeddings, prefix.mask, 4, scale).shape() ==
            Shape{batch, 4});
  }
  // Exactly cls_token_num rows is taken as it is by every path.
  Tensor<double> exact = Tensor<float>::randn({batch, slots, c.caption_dim}, data).to<double>();
  model.train();
  CHECK(model.forward_train(idx, exact).shape() == Shape{batch, 5, c.vocab_size});
  model.eval();
  CHECK(model.forward_train(idx, exact).shape() == Shape{batch, 5, c.vocab_size});
  for (double scale : {1.0, 3.0})
    CHECK(generate::generate_greedy(model, exact, Tensor<bool>(), 4, scale).shape() ==
          Shape{batch, 4});
}

TEST_CASE("GPT forward_train_tail equals forward_train on the full left-padded prefix",
          "[gpt][train]") {
  // Leaving out the slots that are padding in every sample changes nothing: logits and every
  // gradient (parameters, caption) agree with the full prefix, guidance dropout included (a dropped
  // sample's kept slots take the same uncond_embedding rows).
  GPTConfig c = small_config(GPTModelType::TextToImage);  // cls_token_num 6
  c.class_dropout_prob = 0.5;
  Generator gen(31);
  GPT<double> model(c, gen);
  randomise(model, 32);
  Generator data(33);
  const int64_t batch = 3, length = 4, slots = c.cls_token_num;
  const std::vector<int64_t> valid = {2, 4, 1};  // the longest fills 4 of the 6 slots
  Tensor<double> hidden = Tensor<float>::randn({batch, length, c.caption_dim}, data).to<double>();
  std::vector<bool> flags;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t < length; ++t) flags.push_back(t < valid[static_cast<size_t>(b)]);
  const Tensor<bool> text_mask = Tensor<bool>::from_vector(flags, {batch, length});
  Tensor<int64_t> idx =
      Tensor<int64_t>::from_vector({1, 5, 9, 15, 0, 2, 2, 7, 3, 3, 20, 11}, {batch, 4});
  const ConditionPrefix<double, CPU> tail = left_pad_condition_tail(hidden, text_mask, slots);
  REQUIRE(tail.embeddings.shape() == Shape{batch, 4, c.caption_dim});
  const ConditionPrefix<double, CPU> full = left_pad_condition(hidden, text_mask, slots);
  CHECK(tail.embeddings.to_vector() == full.embeddings.narrow(1, 2, 4).contiguous().to_vector());

  auto run = [&](bool use_tail, const Tensor<bool>& force_drop) {
    model.zero_grad();
    const ConditionPrefix<double, CPU>& p = use_tail ? tail : full;
    Tensor<double> caption = p.embeddings.detach().clone().requires_grad_();
    const Tensor<bool> mask = condition_attention_mask(p.mask, 4);
    Tensor<double> logits = use_tail ? model.forward_train_tail(idx, caption, mask, force_drop)
                                     : model.forward_train(idx, caption, mask, force_drop);
    model
        .loss(logits, Tensor<int64_t>::from_vector({4, 1, 5, 9, 15, 8, 0, 2, 2, 7, 6, 3, 3, 20, 11},
                                                   {batch, 5}))
        .backward();
    std::vector<std::vector<double>> grads;
    for (auto& [name, t] : model.named_parameters()) grads.push_back(t->grad().to_vector());
    Tensor<double> caption_grad = caption.grad();
    if (!use_tail) caption_grad = caption_grad.narrow(1, 2, 4);
    grads.push_back(caption_grad.contiguous().to_vector());
    return std::make_pair(logits.detach().contiguous().to_vector(), grads);
  };
  for (const bool train : {false, true}) {
    INFO((train ? "train mode" : "eval mode"));
    model.train(train);
    const Tensor<bool> drop = Tensor<bool>::from_vector({false, true, false}, {batch});
    const auto [tail_logits, tail_grads] = run(true, drop);
    const auto [full_logits, full_grads] = run(false, drop);
    REQUIRE(tail_logits.size() == full_logits.size());
    double worst = 0;
    for (size_t i = 0; i < tail_logits.size(); ++i)
      worst = std::max(worst, std::abs(tail_logits[i] - full_logits[i]));
    CHECK(worst < 1e-12);
    REQUIRE(tail_grads.size() == full_grads.size());
    for (size_t g = 0; g < tail_grads.size(); ++g) {
      INFO("gradient " << g);
      REQUIRE(tail_grads[g].size() == full_grads[g].size());
      double gworst = 0;
      for (size_t i = 0; i < tail_grads[g].size(); ++i)
        gworst = std::max(gworst, std::abs(tail_grads[g][i] - full_grads[g][i]));
      CHECK(gworst < 1e-12);
    }
  }
  // Misuse: no mask, more rows than slots, a c2i model.
  const Tensor<bool> mask = condition_attention_mask(tail.mask, 4);
  CHECK_THROWS_WITH(model.forward_train_tail(idx, tail.embeddings, Tensor<bool>()),
                    has_text("the condition mask is required"));
  Tensor<double> too_long = Tensor<double>::zeros({batch, slots + 1, c.caption_dim});
  CHECK_THROWS_WITH(model.forward_train_tail(idx, too_long, mask),
                    has_text("1 .. cls_token_num = 6"));
  CHECK_THROWS_WITH(model.forward_train_tail(idx, tail.embeddings, full.mask),
                    has_text("GPT::forward_train: mask"));
  GPT<double> c2i(small_config(GPTModelType::ClassToImage), gen);
  CHECK_THROWS_WITH(c2i.forward_train_tail(idx, tail.embeddings, mask), has_text("c2i"));
}

TEST_CASE("generate_greedy: messages show the caller's batch; a failure leaves no cache",
          "[gpt][errors][generate]") {
  SECTION("t2i: emb_mask checked against the batch of 2, not the guided batch of 4") {
    GPTConfig c = small_config(GPTModelType::TextToImage);
    Generator gen(31);
    GPT<float> model(c, gen);
    model.eval();
    Tensor<float> caption = Tensor<float>::zeros({2, c.cls_token_num, c.caption_dim});
    for (double scale : {1.0, 4.0}) {
      INFO("cfg " << scale);
      CHECK_THROWS_WITH(
          generate::generate_greedy(model, caption, Tensor<bool>::ones({2, 5}), 4, scale),
          has_text("emb_mask [2, 5] is not [2, 6]"));
      CHECK(model.cache_capacity() == 0);
    }
  }
  SECTION("c2i: a label out of range throws inside the prefill; the cache is freed") {
    GPTConfig c = small_config(GPTModelType::ClassToImage);
    Generator gen(32);
    GPT<float> model(c, gen);
    randomise(model, 33);
    model.eval();
    Tensor<int64_t> labels = Tensor<int64_t>::from_vector({1, 3}, {2});
    const auto before =
        generate::generate_greedy(model, labels, Tensor<bool>(), 6, 2.0).to_vector();
    Tensor<int64_t> bad = Tensor<int64_t>::from_vector({1, 9}, {2});  // null class is 5
    CHECK_THROWS_WITH(generate::generate_greedy(model, bad, Tensor<bool>(), 6, 2.0), has_text("9"));
    CHECK(model.cache_capacity() == 0);
    CHECK(generate::generate_greedy(model, labels, Tensor<bool>(), 6, 2.0).to_vector() == before);
    CHECK(model.cache_capacity() == 0);
  }
}

}  // namespace test_gpt
