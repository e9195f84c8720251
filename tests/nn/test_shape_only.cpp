// The shape-only device: its tensors keep shapes, views and autograd flags without memory (a
// tensor of 2^40 elements allocates nothing), values written are dropped and reading one is an
// error; a module built on it has the names and shapes of the same module built on the CPU, which
// is the reference here.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "catch.hpp"
#include "mentor/nn/layers.hpp"
#include "mentor/nn/module.hpp"
#include "mentor/nn/transformer.hpp"

namespace test_shape_only {

using namespace mentor;

namespace {

#ifdef MENTOR_CATCH3
auto has_text(const std::string& text) { return Catch::Matchers::ContainsSubstring(text); }
#else
auto has_text(const std::string& text) { return Catch::Contains(text); }
#endif

// A tiny model whose constructor takes a config, as the models' do.
struct TinyConfig {
  nn::TransformerBlockConfig block;
  int64_t layers = 0, vocab = 0;
};

template <class T, class D>
class Tiny : public nn::Module<T, D> {
 public:
  Tiny(const TinyConfig& c, Generator& gen)
      : embedding(c.vocab, c.block.dim, gen),
        norm(c.block.dim),
        head(c.block.dim, c.vocab, true, gen) {
    for (int64_t i = 0; i < c.layers; ++i) blocks.emplace_back(c.block, gen);
  }
  void visit(nn::Visitor<T, D>& v) override {
    v.child("embedding", embedding);
    v.children("blocks", blocks);
    v.child("norm", norm);
    v.child("head", head);
  }
  nn::Embedding<T, D> embedding;
  std::vector<nn::TransformerBlock<T, D>> blocks;
  nn::RMSNorm<T, D> norm;
  nn::Linear<T, D> head;
};

}  // namespace

TEST_CASE("shape-only tensors have shapes, views and autograd flags but no memory",
          "[nn][shape_only]") {
  const Shape huge{int64_t{1} << 20, int64_t{1} << 20};  // 4 TiB of float
  Generator gen(1);
  Tensor<float, ShapeOnly> w = Tensor<float, ShapeOnly>::randn(huge, gen).requires_grad_();
  CHECK(w.shape() == huge);
  CHECK(w.storage()->data == nullptr);
  CHECK(w.requires_grad());
  CHECK(gen.offset > 0);  // the stream advances as it would for a real draw
  CHECK(w.t().shape() == huge);
  CHECK(w.detach().view({-1}).shape() == Shape{int64_t{1} << 40});
  CHECK(w.detach().to<bf16>().shape() == huge);

  Tensor<float, ShapeOnly> moved = Tensor<float>::ones({2, 3}).to<ShapeOnly>();
  CHECK(moved.shape() == Shape{2, 3});
  CHECK(moved.describe() == "Tensor<float32, shape-only> [2, 3]");
  CHECK_THROWS_WITH(moved.to_vector(), has_text("a shape-only tensor holds no values to read"));
  CHECK_THROWS_WITH(moved.to<CPU>(), has_text("a shape-only tensor holds no values to read"));
}

TEST_CASE("a module built on the shape-only device lists the CPU module's names and shapes",
          "[nn][shape_only]") {
  TinyConfig c;
  c.block = {.dim = 16, .n_head = 4, .n_kv_head = 2, .ffn_hidden_dim = 24};
  c.layers = 3;
  c.vocab = 11;
  Generator gen(7);
  Tiny<float, CPU> built(c, gen);
  const auto shapes = nn::parameter_shapes_of<Tiny<float, ShapeOnly>>(c);
  const auto expected = built.named_parameters();
  REQUIRE(shapes.size() == expected.size());
  for (size_t i = 0; i < shapes.size(); ++i) {
    CHECK(shapes[i].first == expected[i].first);
    CHECK(shapes[i].second == expected[i].second->shape());
  }
  CHECK(nn::parameter_shapes(built) == shapes);
}

}  // namespace test_shape_only
