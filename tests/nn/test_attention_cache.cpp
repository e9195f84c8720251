// The Llama building blocks: multi-head attention with fused qkv, grouped KV heads and the KV
// cache; the SwiGLU feed-forward; the transformer block. References are written here in plain
// double loops (attention with interleaved-pair rotation, masked softmax, head grouping), or are
// the whole-sequence path itself for the cached one, or central finite differences.
#include <cmath>
#include <limits>
#include <vector>

#include "catch.hpp"
#include "mentor/nn/attention.hpp"
#include "mentor/nn/feed_forward.hpp"
#include "mentor/nn/transformer.hpp"
#include "mentor/ops/shape_ops.hpp"
#include "op_harness.hpp"

namespace test_attention_cache {

using namespace mentor;
using namespace mentor::nn;

namespace {

#ifdef MENTOR_CATCH3
auto has_text(const std::string& text) { return Catch::Matchers::ContainsSubstring(text); }
#else
auto has_text(const std::string& text) { return Catch::Contains(text); }
#endif

double rel(const Tensor<double>& a, const Tensor<double>& b) {
  REQUIRE(a.shape() == b.shape());
  auto va = a.contiguous().to_vector(), vb = b.contiguous().to_vector();
  double num = 0, den = 0;
  for (size_t i = 0; i < va.size(); ++i)
    num += (va[i] - vb[i]) * (va[i] - vb[i]), den += vb[i] * vb[i];
  return std::sqrt(num / den);
}

// A rotary table [S, Dh/2, 2] of arbitrary angles (the attention layer only consumes the table).
Tensor<float> rotary_table(int64_t seq, int64_t head_dim, uint64_t seed) {
  Generator gen(seed);
  auto angles = Tensor<float>::rand({seq, head_dim / 2}, gen, -3.f, 3.f).to_vector();
  std::vector<float> table;
  for (float a : angles) table.push_back(std::cos(a)), table.push_back(std::sin(a));
  return Tensor<float>::from_vector(table, {seq, head_dim / 2, 2});
}

Tensor<double> random(const Shape& shape, uint64_t seed, float std = 1.f) {
  Generator gen(seed);
  return Tensor<float>::randn(shape, gen, 0.f, std).to<double>();
}

void randomise(Module<double, CPU>& m, uint64_t seed) {
  Generator gen(seed);
  NoGradGuard no_grad;
  for (auto& [name, t] : m.state())
    t->copy_(Tensor<float>::randn(t->shape(), gen, 0.f, 0.3f).to<double>());
}

// The attention of upstream's Attention.forward, by plain loops: rows of wqkv are q heads, then k
// heads, then v heads; pairs (2j, 2j+1) rotated by table row s; head h reads KV head
// h / (H / Hk); allowed(b, i, j) says which keys query i sees; softmax(q k^T / sqrt(Dh)) v; wo.
template <class Allowed>
Tensor<double> reference_attention(const Tensor<double>& x, const Tensor<double>& wqkv,
                                   const Tensor<double>& wo, const Tensor<float>& table,
                                   int64_t heads, int64_t kv_heads, Allowed allowed) {
  const int64_t batch = x.size(0), seq = x.size(1), dim = x.size(2), dh = dim / heads;
  const int64_t rows = wqkv.size(0);
  auto X = x.contiguous().to_vector(), W = wqkv.to_vector(), O = wo.to_vector();
  auto R = table.contiguous().to_vector();
  auto at = [](std::vector<double>& v, int64_t i) -> double& { return v[static_cast<size_t>(i)]; };
  std::vector<double> qkv(static_cast<size_t>(batch * seq * rows));
  for (int64_t t = 0; t < batch * seq; ++t)
    for (int64_t r = 0; r < rows; ++r) {
      double s = 0;
      for (int64_t c = 0; c < dim; ++c)
        s += X[static_cast<size_t>(t * dim + c)] * W[static_cast<size_t>(r * dim + c)];
      at(qkv, t * rows + r) = s;
    }
  // Rotate the q and k heads in place.
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t s = 0; s < seq; ++s)
      for (int64_t head = 0; head < heads + kv_heads; ++head)
        for (int64_t j = 0; j < dh / 2; ++j) {
          double& a = at(qkv, (b * seq + s) * rows + head * dh + 2 * j);
          double& c = at(qkv, (b * seq + s) * rows + head * dh + 2 * j + 1);
          double cs = R[static_cast<size_t>((s * dh / 2 + j) * 2)],
                 sn = R[static_cast<size_t>((s * dh / 2 + j) * 2 + 1)];
          double a2 = a * cs - c * sn, c2 = c * cs + a * sn;
          a = a2, c = c2;
        }
  std::vector<double> merged(static_cast<size_t>(batch * seq * dim), 0.0);
  const int64_t group = heads / kv_heads;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t kvh = h / group;
      for (int64_t i = 0; i < seq; ++i) {
        std::vector<double> score(static_cast<size_t>(seq),
                                  -std::numeric_limits<double>::infinity());
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < seq; ++j) {
          if (!allowed(b, i, j)) continue;
          double s = 0;
          for (int64_t d = 0; d < dh; ++d)
            s += at(qkv, (b * seq + i) * rows + h * dh + d) *
                 at(qkv, (b * seq + j) * rows + (heads + kvh) * dh + d);
          score[static_cast<size_t>(j)] = s / std::sqrt(static_cast<double>(dh));
          mx = std::max(mx, score[static_cast<size_t>(j)]);
        }
        double total = 0;
        for (auto& s : score) s = std::exp(s - mx), total += s;
        for (int64_t j = 0; j < seq; ++j)
          for (int64_t d = 0; d < dh; ++d)
            at(merged, (b * seq + i) * dim + h * dh + d) +=
                score[static_cast<size_t>(j)] / total *
                at(qkv, (b * seq + j) * rows + (heads + kv_heads + kvh) * dh + d);
      }
    }
  std::vector<double> out(static_cast<size_t>(batch * seq * dim));
  for (int64_t t = 0; t < batch * seq; ++t)
    for (int64_t r = 0; r < dim; ++r) {
      double s = 0;
      for (int64_t c = 0; c < dim; ++c)
        s += merged[static_cast<size_t>(t * dim + c)] * O[static_cast<size_t>(r * dim + c)];
      at(out, t * dim + r) = s;
    }
  return Tensor<double>::from_vector(out, x.shape());
}

// LlamaGen's left-padded prefix mask [B, 1, S, S]: causal, the first pad[b] columns off, diagonal
// on.
Tensor<bool> prefix_mask(int64_t seq, const std::vector<int64_t>& pad) {
  const int64_t batch = static_cast<int64_t>(pad.size());
  std::vector<bool> m(static_cast<size_t>(batch * seq * seq));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < seq; ++i)
      for (int64_t j = 0; j < seq; ++j)
        m[static_cast<size_t>((b * seq + i) * seq + j)] =
            (j <= i && j >= pad[static_cast<size_t>(b)]) || i == j;
  return Tensor<bool>::from_vector(m, {batch, 1, seq, seq});
}

}  // namespace

TEST_CASE("Attention equals the loop reference (fused qkv, rotation, masks, grouped KV)",
          "[attention]") {
  const int64_t batch = 2, seq = 7, dim = 32, heads = 4;
  Tensor<double> x = random({batch, seq, dim}, 1);
  Tensor<float> table = rotary_table(seq, dim / heads, 2);
  for (int64_t kv_heads : {4, 2, 1}) {
    INFO("n_kv_head " << kv_heads);
    Generator gen(3);
    Attention<double> attention(dim, heads, kv_heads, gen);
    randomise(attention, 4 + static_cast<uint64_t>(kv_heads));
    REQUIRE(attention.wqkv.weight.shape() == Shape{(heads + 2 * kv_heads) * dim / heads, dim});
    const std::vector<int64_t> pad = {2, 0};
    Tensor<double> causal = attention(x, table, AttnMask<CPU>::causal());
    Tensor<double> masked = attention(x, table, AttnMask<CPU>::from(prefix_mask(seq, pad)));
    Tensor<double> full = attention(x, table, AttnMask<CPU>{});
    CHECK(rel(causal, reference_attention(
                          x, attention.wqkv.weight, attention.wo.weight, table, heads, kv_heads,
                          [](int64_t, int64_t i, int64_t j) { return j <= i; })) < 1e-12);
    CHECK(rel(masked, reference_attention(x, attention.wqkv.weight, attention.wo.weight, table,
                                          heads, kv_heads, [&](int64_t b, int64_t i, int64_t j) {
                                            return (j <= i && j >= pad[static_cast<size_t>(b)]) ||
                                                   i == j;
                                          })) < 1e-12);
    CHECK(rel(full, reference_attention(x, attention.wqkv.weight, attention.wo.weight, table, heads,
                                        kv_heads, [](int64_t, int64_t, int64_t) { return true; })) <
          1e-12);
  }
}

TEST_CASE("Grouped KV heads equal multi-head attention with repeated KV weights", "[attention]") {
  // upstream repeat_interleave: KV head j serves query heads j*g .. j*g+g-1.
  const int64_t batch = 2, seq = 5, dim = 24, heads = 6, kv_heads = 2, dh = dim / heads,
                g = heads / kv_heads;
  Generator gen(5);
  Attention<double> grouped(dim, heads, kv_heads, gen);
  Attention<double> plain(dim, heads, 0, gen);
  randomise(grouped, 6);
  {
    NoGradGuard no_grad;
    plain.wo.weight.copy_(grouped.wo.weight);
    auto w = grouped.wqkv.weight;
    auto p = plain.wqkv.weight;
    p.narrow(0, 0, dim).copy_(w.narrow(0, 0, dim));
    for (int64_t h = 0; h < heads; ++h) {
      p.narrow(0, dim + h * dh, dh).copy_(w.narrow(0, dim + (h / g) * dh, dh));
      p.narrow(0, 2 * dim + h * dh, dh).copy_(w.narrow(0, dim + kv_heads * dh + (h / g) * dh, dh));
    }
  }
  Tensor<double> x = random({batch, seq, dim}, 7);
  Tensor<float> table = rotary_table(seq, dh, 8);
  CHECK(rel(grouped(x, table, AttnMask<CPU>::causal()), plain(x, table, AttnMask<CPU>::causal())) <
        1e-13);
}

TEST_CASE("KV-cached attention equals the whole-sequence path", "[attention][cache]") {
  const int64_t batch = 2, seq = 9, dim = 32, heads = 4;
  Tensor<double> x = random({batch, seq, dim}, 9);
  Tensor<float> table = rotary_table(seq, dim / heads, 10);
  auto make = [&](int64_t kv_heads) {
    Generator gen(11);
    Attention<double> attention(dim, heads, kv_heads, gen);
    randomise(attention, 12);
    return attention;
  };
  NoGradGuard no_grad;
  for (int64_t kv_heads : {4, 2}) {
    INFO("n_kv_head " << kv_heads);
    {  // causal: prefill 3, a chunk of 2, then single steps
      Attention<double> attention = make(kv_heads);
      Tensor<double> expected = attention(x, table, AttnMask<CPU>::causal());
      attention.setup_cache(batch, 16);
      REQUIRE(attention.kv_cache.k.shape() == Shape{batch, kv_heads, 16, dim / heads});
      std::vector<Tensor<double>> parts;
      int64_t pos = 0;
      for (int64_t len : {3, 2, 1, 1, 1, 1}) {
        parts.push_back(attention.forward_cached(x.narrow(1, pos, len), table.narrow(0, pos, len),
                                                 pos, AttnMask<CPU>::causal()));
        pos += len;
      }
      REQUIRE(pos == seq);
      CHECK(rel(concat(parts, 1), expected) < 1e-13);
    }
    {  // left-padded prefix: prefill with the explicit mask, steps with a row of it
      Attention<double> attention = make(kv_heads);
      const int64_t prefix = 4;
      Tensor<bool> mask = prefix_mask(seq, {3, 1});
      Tensor<double> expected = attention(x, table, AttnMask<CPU>::from(mask));
      attention.setup_cache(batch, seq);
      std::vector<Tensor<double>> parts;
      Tensor<bool> prefill_mask = mask.narrow(2, 0, prefix).narrow(3, 0, prefix).contiguous();
      parts.push_back(attention.forward_cached(x.narrow(1, 0, prefix), table.narrow(0, 0, prefix),
                                               0, AttnMask<CPU>::from(prefill_mask)));
      for (int64_t pos = prefix; pos < seq; ++pos) {
        Tensor<bool> row = mask.narrow(2, pos, 1).narrow(3, 0, pos + 1).contiguous();
        parts.push_back(attention.forward_cached(x.narrow(1, pos, 1), table.narrow(0, pos, 1), pos,
                                                 AttnMask<CPU>::from(row)));
      }
      CHECK(rel(concat(parts, 1), expected) < 1e-13);
    }
    {  // a smaller batch uses the first cache rows; a new prefill overwrites the old one
      Attention<double> attention = make(kv_heads);
      attention.setup_cache(batch + 1, 12);
      Tensor<double> first = x.narrow(0, 0, 1);
      Tensor<double> expected = attention(first, table, AttnMask<CPU>::causal());
      Tensor<double> junk = random({1, seq, dim}, 13);
      attention.forward_cached(junk, table, 0, AttnMask<CPU>::causal());
      Tensor<double> got = attention.forward_cached(first, table, 0, AttnMask<CPU>::causal());
      CHECK(rel(got, expected) < 1e-13);
    }
  }
}

TEST_CASE("Attention gradients match finite differences", "[attention][grad]") {
  const int64_t batch = 2, seq = 4, dim = 8, heads = 2, kv_heads = 1;
  Generator gen(14);
  Attention<double> attention(dim, heads, kv_heads, gen);
  Tensor<float> table = rotary_table(seq, dim / heads, 15);
  Tensor<bool> mask = prefix_mask(seq, {1, 0});
  Tensor<double> x = random({batch, seq, dim}, 16);
  Tensor<double> wqkv = random(attention.wqkv.weight.shape(), 17, 0.5f);
  Tensor<double> wo = random(attention.wo.weight.shape(), 18, 0.5f);
  double worst = test::check_gradients(
      [&](const std::vector<Tensor<double>>& in) {
        attention.wqkv.weight = in[1];
        attention.wo.weight = in[2];
        return attention(in[0], table, AttnMask<CPU>::from(mask));
      },
      {x, wqkv, wo});
  CHECK(worst < 1e-6);
}

TEST_CASE("SwiGLU feed-forward and its hidden size", "[feed_forward]") {
  // mentor-system.md §2.1: FFN hidden of the GPT presets (multiple_of 256).
  const std::pair<int64_t, int64_t> sizes[] = {{768, 2048},  {1024, 2816}, {1280, 3584},
                                               {1536, 4096}, {2560, 6912}, {2048, 5632},
                                               {3200, 8704}, {4096, 11008}};
  for (auto [dim, hidden] : sizes) CHECK(swiglu_hidden_dim(dim, 256) == hidden);
  CHECK(swiglu_hidden_dim(64, 32) == 192);       // the fixtures' size: int(512/3) = 170 -> 192
  CHECK(swiglu_hidden_dim(64, 32, 1.5) == 256);  // int(1.5 * 170) = 255 -> 256
  CHECK_THROWS_WITH(swiglu_hidden_dim(64, 0), has_text("multiple_of 0"));

  const int64_t dim = 6, hidden = 10;
  Generator gen(19);
  FeedForward<double> ffn(dim, hidden, gen);
  randomise(ffn, 20);
  Tensor<double> x = random({2, 3, dim}, 21);
  auto X = x.to_vector(), W1 = ffn.w1.weight.to_vector(), W2 = ffn.w2.weight.to_vector(),
       W3 = ffn.w3.weight.to_vector();
  std::vector<double> expected;
  for (int64_t t = 0; t < 6; ++t) {
    std::vector<double> gate(hidden);
    for (int64_t k = 0; k < hidden; ++k) {
      double a = 0, b = 0;
      for (int64_t c = 0; c < dim; ++c) {
        a += X[static_cast<size_t>(t * dim + c)] * W1[static_cast<size_t>(k * dim + c)];
        b += X[static_cast<size_t>(t * dim + c)] * W3[static_cast<size_t>(k * dim + c)];
      }
      gate[static_cast<size_t>(k)] = a / (1 + std::exp(-a)) * b;
    }
    for (int64_t r = 0; r < dim; ++r) {
      double s = 0;
      for (int64_t k = 0; k < hidden; ++k)
        s += gate[static_cast<size_t>(k)] * W2[static_cast<size_t>(r * hidden + k)];
      expected.push_back(s);
    }
  }
  CHECK(rel(ffn(x), Tensor<double>::from_vector(expected, x.shape())) < 1e-13);
  auto names = ffn.named_parameters();
  REQUIRE(names.size() == 3);
  CHECK(names[0].first == "w1.weight");
  CHECK(names[1].first == "w2.weight");
  CHECK(names[2].first == "w3.weight");
}

TEST_CASE("TransformerBlock: upstream names, cached path equals the whole sequence",
          "[transformer]") {
  TransformerBlockConfig config;
  config.dim = 16;
  config.n_head = 4;
  config.n_kv_head = 2;
  config.ffn_hidden_dim = swiglu_hidden_dim(16, 8);
  Generator gen(22);
  TransformerBlock<double> block(config, gen);
  randomise(block, 23);
  std::vector<std::string> names;
  for (auto& [name, t] : block.named_parameters()) names.push_back(name);
  CHECK(names == std::vector<std::string>{"attention.wqkv.weight", "attention.wo.weight",
                                          "feed_forward.w1.weight", "feed_forward.w2.weight",
                                          "feed_forward.w3.weight", "attention_norm.weight",
                                          "ffn_norm.weight"});
  const int64_t seq = 6;
  Tensor<double> x = random({2, seq, 16}, 24);
  Tensor<float> table = rotary_table(seq, 4, 25);
  NoGradGuard no_grad;
  Tensor<double> expected = block(x, table, AttnMask<CPU>::causal());
  block.attention.setup_cache(2, 8);
  std::vector<Tensor<double>> parts{
      block.forward_cached(x.narrow(1, 0, 2), table.narrow(0, 0, 2), 0, AttnMask<CPU>::causal())};
  for (int64_t pos = 2; pos < seq; ++pos)
    parts.push_back(block.forward_cached(x.narrow(1, pos, 1), table.narrow(0, pos, 1), pos,
                                         AttnMask<CPU>::causal()));
  CHECK(rel(concat(parts, 1), expected) < 1e-13);
}

TEST_CASE("Attention reports misuse clearly", "[attention][errors]") {
  Generator gen(26);
  CHECK_THROWS_WITH(Attention<float>(30, 4, 0, gen),
                    has_text("dim 30 is not a multiple of n_head 4"));
  CHECK_THROWS_WITH(Attention<float>(32, 4, 3, gen),
                    has_text("n_kv_head 3 does not divide n_head 4"));
  CHECK_THROWS_WITH(Attention<float>(24, 4, 0, gen), has_text("head_dim 6"));
  Attention<float> attention(32, 4, 2, gen);
  Tensor<float> x = Tensor<float>::zeros({2, 3, 32});
  Tensor<float> table = rotary_table(3, 8, 27);
  CHECK_THROWS_WITH(attention(Tensor<float>::zeros({2, 3, 16}), table, {}), has_text("[2, 3, 16]"));
  CHECK_THROWS_WITH(attention(x, rotary_table(4, 8, 27), {}), has_text("rotary table [4, 4, 2]"));
  CHECK_THROWS_WITH(attention.forward_cached(x, table, 0, {}), has_text("no KV cache"));
  attention.setup_cache(2, 4);
  CHECK_THROWS_WITH(attention.forward_cached(x, table, 2, {}),
                    has_text("exceed the cache capacity 4"));
  CHECK_THROWS_WITH(attention.forward_cached(Tensor<float>::zeros({3, 3, 32}), table, 0, {}),
                    has_text("exceeds the cache batch 2"));
  Tensor<float> trainable = x.clone().requires_grad_();
  CHECK_THROWS_WITH(attention.forward_cached(trainable, table, 0, {}), has_text("inference-only"));
  attention.clear_cache();
  CHECK_FALSE(attention.kv_cache.allocated());
}

}  // namespace test_attention_cache
