// concat, stack, split, chunk, index_select, gather, masked_fill, where: PyTorch goldens, finite
// differences (including non-contiguous inputs and the grouped path of long concats), integer and
// boolean element types, float/bf16 against double, and error messages.
#include <string>
#include <vector>

#include "mentor/ops/elementwise.hpp"
#include "mentor/ops/shape_ops.hpp"
#include "op_harness.hpp"

namespace test_shape_ops {

using namespace mentor;
using mentor::test::check_golden_case;
using mentor::test::check_gradients;
using mentor::test::golden;
using mentor::test::golden_mask;
using mentor::test::op_goldens;
using mentor::test::rel_error;
using V = std::vector<Tensor<double>>;

namespace {

// Golden check for a case with one floating input `x`-like input plus a non-floating one: forward,
// then the gradient of sum(out * cot) for the floating inputs listed.
void check_golden_with_grads(const std::string& name, const std::vector<Tensor<double>>& inputs,
                             const Tensor<double>& out, const std::vector<std::string>& names) {
  INFO(name);
  CHECK(rel_error(out, golden<double>(name + ".out")) <= 1e-12);
  out.backward(golden<double>(name + ".cot"));
  for (size_t i = 0; i < inputs.size(); ++i) {
    INFO("gradient of " << names[i]);
    CHECK(rel_error(inputs[i].grad(), golden<double>(name + ".grad." + names[i])) <= 1e-12);
  }
}

Tensor<double> leaf(const std::string& key) { return golden<double>(key).requires_grad_(); }
}  // namespace

TEST_CASE("shape ops match PyTorch goldens", "[ops][shape]") {
  check_golden_case("concat_dim1", [](const V& x) { return concat(V{x[0], x[1]}, 1); }, {"a", "b"});

  SECTION("chunk") {
    auto x = leaf("chunk_last.in.x");
    auto pieces = chunk(x, 3, -1);
    REQUIRE(pieces.size() == 3);
    for (int i = 0; i < 3; ++i) {
      std::string key = "chunk_last.out." + std::to_string(i);
      CHECK(rel_error(pieces[i], golden<double>(key)) == 0.0);
      // The leaf accumulates over the three backward calls: sum_i d(sum(piece_i * cot_i))/dx.
      auto cot = golden<double>("chunk_last.cot." + std::to_string(i));
      pieces[i].backward(cot);
    }
    CHECK(rel_error(x.grad(), golden<double>("chunk_last.grad.x")) <= 1e-12);
  }
  SECTION("index_select") {
    auto x = leaf("index_select_dim0.in.x");
    auto ids = golden<int64_t>("index_select_dim0.in.ids");
    check_golden_with_grads("index_select_dim0", {x}, index_select(x, 0, ids), {"x"});
  }
  SECTION("gather") {
    auto x = leaf("gather_last.in.x");
    auto ids = golden<int64_t>("gather_last.in.ids");
    check_golden_with_grads("gather_last", {x}, gather(x, -1, ids), {"x"});
  }
  SECTION("masked_fill") {
    auto x = leaf("masked_fill.in.x");
    auto mask = golden_mask("masked_fill.in.mask");
    check_golden_with_grads("masked_fill", {x}, masked_fill(x, mask, -7.5), {"x"});
  }
  SECTION("where") {
    auto a = leaf("where.in.a");
    auto b = leaf("where.in.b");
    auto cond = golden_mask("where.in.cond");
    check_golden_with_grads("where", {a, b}, where(cond, a, b), {"a", "b"});
  }
}

TEST_CASE("shape ops gradients match finite differences", "[ops][shape][grad]") {
  Generator gen(4);
  auto a = Tensor<double>::randn({2, 3, 4}, gen);
  auto b = Tensor<double>::randn({2, 1, 4}, gen);
  auto c = Tensor<double>::randn({4, 2, 2}, gen);
  SECTION("concat of three, one transposed, along a middle and the last dimension") {
    check_gradients(
        [](const V& x) {
          return concat(V{x[0], x[1], x[2].transpose(0, 2)}, 1);
        },
        {a, b, c});
    check_gradients([](const V& x) { return concat(V{x[0], x[1].expand({2, 3, 4})}, -1); }, {a, b});
  }
  SECTION("concat of more inputs than one node takes (grouped), with a repeated input") {
    check_gradients(
        [](const V& x) {
          V parts;
          for (int i = 0; i < 11; ++i) parts.push_back(i % 3 == 0 ? x[0] : x[1] * double(i));
          return concat(parts, 0);
        },
        {a.narrow(1, 0, 1).contiguous(), b});
  }
  SECTION("stack") {
    check_gradients(
        [](const V& x) {
          return stack(V{x[0], x[1], x[0]}, -1);
        },
        {Tensor<double>::randn({3, 2}, gen), Tensor<double>::randn({3, 2}, gen)});
  }
  SECTION("split and chunk pieces recombined") {
    check_gradients(
        [](const V& x) {
          auto pieces = split(x[0], {1, 0, 3}, 2);
          auto halves = chunk(x[0].transpose(0, 1), 2, 0);  // sizes 2 and 1 along the length-3 axis
          V joined_pieces{pieces[2] * 2.0, pieces[0]};      // [2, 3, 3] + [2, 3, 1] along 2
          return concat(V{concat(joined_pieces, 2), halves[1].transpose(0, 1)}, 1);
        },
        {a});
  }
  SECTION("index_select along a middle dimension with repeated ids, non-contiguous input") {
    auto ids = Tensor<int64_t>::from_vector({3, 0, 3, 3, 1});
    check_gradients([ids](const V& x) { return index_select(x[0].transpose(1, 2), 1, ids); }, {a});
  }
  SECTION("gather along dimension 0 with a smaller index tensor") {
    auto ids = Tensor<int64_t>::from_vector({1, 0, 1, 1, 1, 0, 0, 0}, {2, 2, 2});
    check_gradients([ids](const V& x) { return gather(x[0], 0, ids); }, {a});
  }
  SECTION("where and masked_fill with broadcasting") {
    auto cond = Tensor<bool>::from_vector({true, false, false, true}, {4});
    check_gradients([cond](const V& x) { return where(cond, x[0], x[1]); }, {a, b});
    auto mask = Tensor<bool>::from_vector({true, false, true}, {3, 1});
    check_gradients([mask](const V& x) { return masked_fill(x[0].transpose(0, 1), mask, 3.0); },
                    {Tensor<double>::randn({4, 3}, gen)});
  }
}

TEST_CASE("shape ops forward values against hand-computed results", "[ops][shape]") {
  auto x = Tensor<double>::arange(12).reshape({3, 4});
  SECTION("concat and stack") {
    auto y = concat(std::vector{x, x.narrow(0, 1, 1)}, 0);
    CHECK(y.shape() == Shape{4, 4});
    CHECK(y.at({3, 2}) == 6.0);
    auto s = stack(std::vector{x, x * 2.0}, 1);
    CHECK(s.shape() == Shape{3, 2, 4});
    CHECK(s.at({2, 1, 3}) == 22.0);
  }
  SECTION("split and chunk are views") {
    auto pieces = chunk(x, 3, 1);  // torch: pieces of ceil(4/3) = 2 -> two pieces
    REQUIRE(pieces.size() == 2);
    CHECK(pieces[1].shape() == Shape{3, 2});
    CHECK(pieces[1].storage() == x.storage());
    CHECK(chunk(Tensor<double>::zeros({5}), 2, 0).back().numel() == 2);
    CHECK(chunk(Tensor<double>::zeros({6}), 4, 0).size() == 3);
  }
  SECTION("index_select, gather, where, masked_fill") {
    auto rows = index_select(x, 1, Tensor<int64_t>::from_vector({3, 3, 0}));
    CHECK(rows.to_vector() == std::vector<double>{3, 3, 0, 7, 7, 4, 11, 11, 8});
    auto picked = gather(x, 1, Tensor<int64_t>::from_vector({2, 0, 3}, {3, 1}));
    CHECK(picked.to_vector() == std::vector<double>{2, 4, 11});
    auto cond = Tensor<bool>::from_vector({true, false, true, false}, {1, 4});
    auto chosen = where(cond, x, Tensor<double>::full({}, -1.0));
    CHECK(chosen.to_vector() == std::vector<double>{0, -1, 2, -1, 4, -1, 6, -1, 8, -1, 10, -1});
    auto filled = masked_fill(x, Tensor<bool>::from_vector({false, true, false}, {3, 1}), 9.0);
    CHECK(filled.to_vector() == std::vector<double>{0, 1, 2, 3, 9, 9, 9, 9, 8, 9, 10, 11});
  }
}

TEST_CASE("shape ops work on integer and boolean tensors", "[ops][shape][int]") {
  auto ids = Tensor<int64_t>::arange(6).reshape({2, 3});
  auto joined = concat(std::vector{ids, ids.narrow(1, 0, 1)}, 1);
  CHECK(joined.to_vector() == std::vector<int64_t>{0, 1, 2, 0, 3, 4, 5, 3});
  auto picked = index_select(ids, 0, Tensor<int64_t>::from_vector({1, 1}));
  CHECK(picked.to_vector() == std::vector<int64_t>{3, 4, 5, 3, 4, 5});
  auto g = gather(ids, 1, Tensor<int64_t>::from_vector({2, 1}, {2, 1}));
  CHECK(g.to_vector() == std::vector<int64_t>{2, 4});
  auto cond = Tensor<bool>::from_vector({true, false, true});
  CHECK(where(cond, ids, Tensor<int64_t>::full({}, -1)).to_vector() ==
        std::vector<int64_t>{0, -1, 2, 3, -1, 5});
  CHECK(masked_fill(ids, cond, 7.0).to_vector() == std::vector<int64_t>{7, 1, 7, 7, 4, 7});
  auto flags = Tensor<bool>::from_vector({true, false});
  auto both = stack(
      std::vector{flags, where(flags, Tensor<bool>::full({}, false), Tensor<bool>::full({}, true))},
      0);
  CHECK(both.to_vector() == std::vector<bool>{true, false, false, true});
  auto halves = split(ids, {2, 1}, 1);
  CHECK(halves[1].to_vector() == std::vector<int64_t>{2, 5});
}

TEST_CASE("shape ops in float and bf16 follow double", "[ops][shape][precision]") {
  Generator gen(8);
  auto a = Tensor<double>::randn({3, 5}, gen);
  auto b = Tensor<double>::randn({2, 5}, gen);
  auto ids = Tensor<int64_t>::from_vector({4, 2, 2, 0}, {2, 2});
  auto cond = Tensor<bool>::from_vector({true, false, false, true, true});
  auto run = [&](auto tag) {
    using T = decltype(tag);
    auto ta = a.to<T>(), tb = b.to<T>();
    auto joined = concat(std::vector{ta, tb}, 0);                         // [5, 5]
    auto picked = index_select(joined, 0, ids.reshape({4}));              // [4, 5]
    auto gathered = gather(picked, 1, concat(std::vector{ids, ids}, 0));  // [4, 2]
    auto masked =
        masked_fill(where(cond, joined, joined * 2.0), cond.unsqueeze(0).expand({5, 5}), -3.0);
    return std::tuple{joined.template to<double>(), picked.template to<double>(),
                      gathered.template to<double>(), masked.template to<double>()};
  };
  auto expected = run(double{});
  auto as_float = run(float{});
  auto as_bf16 = run(bf16{});
  // Pure data movement: float is exact up to the rounding of the inputs themselves.
  CHECK(rel_error(std::get<0>(as_float), std::get<0>(expected)) <= 1e-7);
  CHECK(rel_error(std::get<1>(as_float), std::get<1>(expected)) <= 1e-7);
  CHECK(rel_error(std::get<2>(as_float), std::get<2>(expected)) <= 1e-7);
  CHECK(rel_error(std::get<3>(as_float), std::get<3>(expected)) <= 1e-7);
  CHECK(rel_error(std::get<0>(as_bf16), std::get<0>(expected)) <= 1e-2);
  CHECK(rel_error(std::get<1>(as_bf16), std::get<1>(expected)) <= 1e-2);
  CHECK(rel_error(std::get<2>(as_bf16), std::get<2>(expected)) <= 1e-2);
  CHECK(rel_error(std::get<3>(as_bf16), std::get<3>(expected)) <= 1e-2);
}

TEST_CASE("shape ops reject bad shapes and indices, naming them", "[ops][shape][errors]") {
  auto x = Tensor<float>::zeros({2, 3});
  auto y = Tensor<float>::zeros({2, 4});
  REQUIRE_THROWS_AS(concat(std::vector{x, y}, 0), ShapeError);
  REQUIRE_THROWS_WITH(concat(std::vector{x, y}, 0), Catch::Contains("concat") &&
                                                        Catch::Contains("[2, 4]") &&
                                                        Catch::Contains("[2, 3]"));
  REQUIRE_THROWS_WITH(concat(std::vector{x, Tensor<float>::zeros({6})}, 0),
                      Catch::Contains("concat") && Catch::Contains("[6]"));
  REQUIRE_THROWS_WITH(concat(std::vector<Tensor<float>>{}, 0), Catch::Contains("concat"));
  REQUIRE_THROWS_WITH(concat(std::vector{Tensor<float>::scalar(1.f)}, 0),
                      Catch::Contains("concat") && Catch::Contains("0-dimensional"));
  REQUIRE_THROWS_WITH(split(Tensor<float>::scalar(1.f), {1}, 0), Catch::Contains("split"));
  REQUIRE_THROWS_WITH(concat(std::vector{x, x}, 2), Catch::Contains("concat"));
  REQUIRE_THROWS_WITH(stack(std::vector{x, y}, 0),
                      Catch::Contains("stack") && Catch::Contains("[2, 4]"));
  REQUIRE_THROWS_WITH(split(x, {1, 1}, 1), Catch::Contains("split") && Catch::Contains("[2, 3]") &&
                                               Catch::Contains("2"));
  REQUIRE_THROWS_WITH(chunk(x, 0, 1), Catch::Contains("chunk"));
  REQUIRE_THROWS_WITH(
      index_select(x, 1, Tensor<int64_t>::from_vector({0, 3})),
      Catch::Contains("index_select") && Catch::Contains("index 3") && Catch::Contains("size 3"));
  REQUIRE_THROWS_WITH(index_select(x, 1, Tensor<int64_t>::from_vector({-1})),
                      Catch::Contains("index_select") && Catch::Contains("-1"));
  REQUIRE_THROWS_WITH(index_select(x, 0, Tensor<int64_t>::zeros({1, 1})),
                      Catch::Contains("index_select") && Catch::Contains("[1, 1]"));
  REQUIRE_THROWS_WITH(
      gather(x, 0, Tensor<int64_t>::from_vector({2}, {1, 1})),
      Catch::Contains("gather") && Catch::Contains("index 2") && Catch::Contains("size 2"));
  REQUIRE_THROWS_WITH(gather(x, 0, Tensor<int64_t>::zeros({1, 4})), Catch::Contains("gather") &&
                                                                        Catch::Contains("[1, 4]") &&
                                                                        Catch::Contains("[2, 3]"));
  REQUIRE_THROWS_WITH(
      masked_fill(x, Tensor<bool>::full({2, 2}, true), 0.0),
      Catch::Contains("masked_fill") && Catch::Contains("[2, 2]") && Catch::Contains("[2, 3]"));
  REQUIRE_THROWS_WITH(masked_fill(x, Tensor<bool>::full({4, 2, 3}, true), 0.0),
                      Catch::Contains("masked_fill") && Catch::Contains("[4, 2, 3]"));
  REQUIRE_THROWS_WITH(where(Tensor<bool>::full({4}, true), x, x), Catch::Contains("where") &&
                                                                      Catch::Contains("[4]") &&
                                                                      Catch::Contains("[2, 3]"));
}

}  // namespace test_shape_ops
