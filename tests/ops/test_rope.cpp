// 2D RoPE: the table against PyTorch's precompute_freqs_cis_2d (both prefix kinds), apply_rope
// against the golden and finite differences, narrowed tables for KV-cached decoding, float32/bf16
// forward checks, error messages.
#include "mentor/ops/rope.hpp"

#include "op_harness.hpp"

namespace test_rope {

using namespace mentor;
using mentor::test::check_golden_case;
using mentor::test::check_gradients;
using mentor::test::golden;
using mentor::test::rel_error;
using V = std::vector<Tensor<double>>;

TEST_CASE("rope_2d_table matches LlamaGen's precompute_freqs_cis_2d", "[ops][rope]") {
  // Golden: grid 4, head_dim 16, 3 condition rows, base 10000, computed by PyTorch in float64.
  // Ours forms the angles in float32 like upstream, so the tables agree to float rounding of the
  // angles (|angle| <= 3 here: ~2e-7 absolute).
  for (auto [name, prefix] : {std::pair{"rope_2d_zero", RopePrefix::Zero},
                              std::pair{"rope_2d_identity", RopePrefix::Identity}}) {
    INFO(name);
    Tensor<double> expected = golden<double>(std::string(name) + ".in.freqs_cis");
    Tensor<float> table = rope_2d_table<CPU>(4, 16, 3, prefix);
    REQUIRE(table.shape() == Shape{19, 8, 2});
    CHECK(mentor::test::max_abs_diff(table.to<double>(), expected) <= 1e-6);
    // Prefix rows are exact.
    for (int64_t i = 0; i < 3; ++i)
      for (int64_t j = 0; j < 8; ++j) {
        CHECK(table.at({i, j, 0}) == (prefix == RopePrefix::Identity ? 1.0f : 0.0f));
        CHECK(table.at({i, j, 1}) == 0.0f);
      }
  }
  // LlamaGen-XL geometry: 32x32 grid, head_dim 64, 120 prefix rows; row 120 + 33 is cell (1, 1):
  // pair j < 16 has angle 1 * 10000^(-j/16), pair 16 + j the same (column 1).
  Tensor<float> big = rope_2d_table<CPU>(32, 64, 120, RopePrefix::Identity);
  REQUIRE(big.shape() == Shape{120 + 1024, 32, 2});
  for (int64_t j = 0; j < 16; ++j) {
    const double angle = std::pow(10000.0, -static_cast<double>(j) / 16.0);
    CHECK(std::abs(big.at({153, j, 0}) - std::cos(angle)) <= 1e-6);
    CHECK(std::abs(big.at({153, 16 + j, 1}) - std::sin(angle)) <= 1e-6);
  }
}

TEST_CASE("apply_rope matches the PyTorch golden", "[ops][rope]") {
  // The table is float by API (the golden's is float64), so forward and gradient agree to the
  // table's float rounding (~6e-8 relative), not to double rounding.
  for (std::string name : {"rope_2d_zero", "rope_2d_identity"}) {
    Tensor<float> table = golden<double>(name + ".in.freqs_cis").to<float>();
    check_golden_case(
        name, [&](const V& x) { return apply_rope(x[0], table); }, {"x"}, 2e-7, 2e-7);
  }
}

TEST_CASE("apply_rope gradient matches finite differences", "[ops][rope][grad]") {
  Generator gen(41);
  Tensor<float> table = rope_2d_table<CPU>(3, 8, 2, RopePrefix::Identity);  // 11 rows
  check_gradients([&](const V& x) { return apply_rope(x[0], table); },
                  {Tensor<double>::randn({2, 11, 3, 8}, gen)});
  // A non-contiguous input in the [B, H, S, Dh] -> [B, S, H, Dh] transposed layout.
  check_gradients(
      [&](const V& x) { return apply_rope(x[0].transpose(1, 2), table.narrow(0, 6, 5)); },
      {Tensor<double>::randn({2, 3, 5, 8}, gen)});
}

TEST_CASE("apply_rope on a narrowed table equals the slice of the full application",
          "[ops][rope]") {
  Generator gen(42);
  NoGradGuard no_grad;
  Tensor<float> table = rope_2d_table<CPU>(4, 16, 3, RopePrefix::Zero);
  auto x = Tensor<float>::randn({2, 19, 2, 16}, gen);
  Tensor<float> full = apply_rope(x, table);
  // Decoding step: positions 7..9 fed alone with the table rows of those positions.
  Tensor<float> part = apply_rope(x.narrow(1, 7, 3), table.narrow(0, 7, 3));
  CHECK(mentor::test::max_abs_diff(part, full.narrow(1, 7, 3).contiguous()) == 0.0);
  // Zero-prefix rows zero the condition tokens (upstream LlamaGen).
  CHECK(mentor::test::max_abs_diff(full.narrow(1, 0, 3).contiguous(),
                                   Tensor<float>::zeros({2, 3, 2, 16})) == 0.0);
}

TEST_CASE("apply_rope in float32 and bf16 follows the double result", "[ops][rope][bf16]") {
  Generator gen(43);
  NoGradGuard no_grad;
  Tensor<float> table = rope_2d_table<CPU>(8, 32, 4, RopePrefix::Identity);
  auto x = Tensor<double>::randn({2, 68, 3, 32}, gen);
  Tensor<double> expected = apply_rope(x, table);
  CHECK(rel_error(apply_rope(x.to<float>(), table), expected) <= 1e-6);
  CHECK(rel_error(apply_rope(x.to<bf16>(), table), expected) <= 1e-2);
}

TEST_CASE("rope rejects bad shapes, naming the op and the shapes", "[ops][rope][errors]") {
  Tensor<float> table = rope_2d_table<CPU>(2, 8, 1, RopePrefix::Zero);  // [5, 4, 2]
  REQUIRE_THROWS_AS(apply_rope(Tensor<float>::zeros({1, 4, 2, 8}), table), ShapeError);
  REQUIRE_THROWS_WITH(apply_rope(Tensor<float>::zeros({1, 4, 2, 8}), table),
                      Catch::Contains("apply_rope") && Catch::Contains("[5, 4, 2]") &&
                          Catch::Contains("[1, 4, 2, 8]"));
  REQUIRE_THROWS_WITH(apply_rope(Tensor<float>::zeros({4, 2, 8}), table),
                      Catch::Contains("apply_rope") && Catch::Contains("[4, 2, 8]"));
  REQUIRE_THROWS_WITH(rope_2d_table<CPU>(4, 6, 0, RopePrefix::Zero),
                      Catch::Contains("rope_2d_table") && Catch::Contains("6"));
}

}  // namespace test_rope
