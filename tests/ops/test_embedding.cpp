// embedding: PyTorch golden (repeated ids scatter-add), finite differences, float32/bf16 lookups
// and bf16 gradient accumulation, error messages.
#include "mentor/ops/embedding.hpp"

#include "op_harness.hpp"

namespace test_embedding {

using namespace mentor;
using mentor::test::check_golden_case;
using mentor::test::check_gradients;
using mentor::test::golden;
using mentor::test::rel_error;
using V = std::vector<Tensor<double>>;

TEST_CASE("embedding matches the PyTorch golden", "[ops][embedding]") {
  Tensor<int64_t> ids = golden<int64_t>("embedding.in.ids");
  check_golden_case("embedding", [&](const V& x) { return embedding(x[0], ids); }, {"table"});
}

TEST_CASE("embedding gradient matches finite differences", "[ops][embedding][grad]") {
  Generator gen(31);
  auto table = Tensor<double>::randn({7, 5}, gen);
  auto ids = Tensor<int64_t>::from_vector({6, 0, 6, 6, 2, 0, 3, 6}, {2, 2, 2});
  check_gradients([&](const V& x) { return embedding(x[0], ids); }, {table});
  // A non-contiguous table (a transposed view) and non-contiguous ids.
  auto ids_t = Tensor<int64_t>::from_vector({1, 4, 4, 0, 2, 1}, {2, 3}).t();
  check_gradients([&](const V& x) { return embedding(x[0].t(), ids_t); },
                  {Tensor<double>::randn({3, 5}, gen)});
}

TEST_CASE("embedding copies rows exactly in every precision", "[ops][embedding][bf16]") {
  Generator gen(32);
  auto table = Tensor<double>::randn({9, 4}, gen);
  auto ids = Tensor<int64_t>::from_vector({8, 0, 3, 3});
  for (auto check : {0, 1}) {
    auto out = check == 0 ? embedding(table.to<float>(), ids).to<double>()
                          : embedding(table.to<bf16>(), ids).to<double>();
    auto ref = check == 0 ? table.to<float>().to<double>() : table.to<bf16>().to<double>();
    for (int64_t i = 0; i < 4; ++i)
      for (int64_t c = 0; c < 4; ++c) CHECK(out.at({i, c}) == ref.at({ids.at({i}), c}));
  }
}

TEST_CASE("bf16 embedding gradients accumulate in float and round once", "[ops][embedding][bf16]") {
  // 1000 gradients of 2^-8 onto one row: a bf16 running sum would stall at 1 (2^-8 is below half
  // an ulp of 1 in bf16); the float sum is 1000 * 2^-8 = 3.90625, which bf16 holds exactly.
  auto table = Tensor<bf16>::zeros({3, 2});
  table.requires_grad_();
  auto ids = Tensor<int64_t>::zeros({1000});
  auto out = embedding(table, ids);
  out.backward(Tensor<bf16>::full({1000, 2}, bf16(1.0f / 256)));
  auto g = table.grad().to<float>();
  CHECK(g.at({0, 0}) == 3.90625f);
  CHECK(g.at({0, 1}) == 3.90625f);
  CHECK(g.at({1, 0}) == 0.0f);
}

TEST_CASE("embedding rejects out-of-range ids and bad tables", "[ops][embedding][errors]") {
  auto table = Tensor<float>::zeros({10, 3});
  REQUIRE_THROWS_AS(embedding(table, Tensor<int64_t>::from_vector({1, 10})), Error);
  REQUIRE_THROWS_WITH(
      embedding(table, Tensor<int64_t>::from_vector({1, 10})),
      Catch::Contains("embedding") && Catch::Contains("id 10") && Catch::Contains("10 rows"));
  REQUIRE_THROWS_WITH(embedding(table, Tensor<int64_t>::from_vector({-1})),
                      Catch::Contains("embedding") && Catch::Contains("id -1"));
  REQUIRE_THROWS_WITH(embedding(Tensor<float>::zeros({10}), Tensor<int64_t>::from_vector({1})),
                      Catch::Contains("embedding") && Catch::Contains("[10]"));
}

}  // namespace test_embedding
