// Op cases of the element-wise, reduction, softmax, loss, normalisation and dropout ops.
#include "mentor/ops/dropout.hpp"
#include "mentor/ops/elementwise.hpp"
#include "mentor/ops/gated.hpp"
#include "mentor/ops/loss.hpp"
#include "mentor/ops/normalize.hpp"
#include "mentor/ops/reduce.hpp"
#include "mentor/ops/softmax.hpp"
#include "mentor/ops/unary.hpp"
#include "registry.hpp"

namespace mentor::op_cases {

namespace {

// The unary ops' shape (their goldens') and perf shape (8M elements).
const Shape kSmall{3, 5, 7};
const Shape kBig{2048, 4096};

void register_unary(Registry& r) {
  auto x = [](double low, double high) { return values("x", kSmall, low, high).perf(kBig); };
  r.add("exp", {x(-2, 2)}, [](const auto& in) { return exp(in[0]); }).golden("exp");
  r.add("log", {x(0.5, 3)}, [](const auto& in) { return log(in[0]); }).golden("log");
  r.add("sqrt", {x(0.5, 3)}, [](const auto& in) { return sqrt(in[0]); }).golden("sqrt");
  r.add("rsqrt", {x(0.5, 3)}, [](const auto& in) { return rsqrt(in[0]); }).golden("rsqrt");
  r.add("tanh", {x(-2, 2)}, [](const auto& in) { return tanh(in[0]); }).golden("tanh");
  r.add("sigmoid", {x(-3, 3)}, [](const auto& in) { return sigmoid(in[0]); }).golden("sigmoid");
  r.add("silu", {x(-3, 3)}, [](const auto& in) { return silu(in[0]); }).golden("silu");
  // The fused gated products (tests/ops/test_unary.cpp holds them against act then mul).
  r.add("swiglu", {x(-3, 3), values("up", kSmall, -2, 2).perf(kBig)},
        [](const auto& in) { return swiglu(in[0], in[1]); });
  r.add("geglu", {x(-3, 3), values("up", kSmall, -2, 2).perf(kBig)},
        [](const auto& in) { return geglu(in[0], in[1]); });
  r.add("geglu.tanh", {x(-3, 3), values("up", kSmall, -2, 2).perf(kBig)},
        [](const auto& in) { return geglu(in[0], in[1], GeluApprox::Tanh); });
  r.add("relu", {signed_values("x", kSmall, 0.1, 2).perf(kBig)}, [](const auto& in) {
     return relu(in[0]);
   }).golden("relu");
  r.add("abs", {signed_values("x", kSmall, 0.1, 2).perf(kBig)},
        [](const auto& in) { return abs(in[0]); });
  r.add("square", {x(-2, 2)}, [](const auto& in) { return square(in[0]); });
  r.add("pow.2_5", {x(0.5, 2)}, [](const auto& in) { return pow(in[0], 2.5); }).golden("pow_2_5");
  r.add("pow.3", {x(-2, 2)}, [](const auto& in) { return pow(in[0], 3.0); }).golden("pow_3");
  r.add("leaky_relu", {signed_values("x", kSmall, 0.1, 2).perf(kBig)}, [](const auto& in) {
     return leaky_relu(in[0], 0.2);
   }).golden("leaky_relu_0_2");
  r.add("gelu", {x(-3, 3)}, [](const auto& in) { return gelu(in[0]); }).golden("gelu_exact");
  r.add("gelu.tanh", {x(-3, 3)}, [](const auto& in) {
     return gelu(in[0], GeluApprox::Tanh);
   }).golden("gelu_tanh");
  r.add("quick_gelu", {x(-3, 3)}, [](const auto& in) {
     return quick_gelu(in[0]);
   }).golden("quick_gelu");
}

void register_elementwise(Registry& r) {
  // Per op: a trailing broadcast ([2, 3, 4] and [3, 1], goldens "<op>_2x3x4_3x1") and an outer
  // product of broadcasts ([2, 1, 5] and [1, 4, 1], goldens "<op>_2x1x5_1x4x1"). Divisors stay
  // away from 0.
  auto b_of = [](const char* op, const Shape& shape, const Shape& perf_shape) {
    return std::string(op) == "div" ? signed_values("b", shape, 0.5, 2).perf(perf_shape)
                                    : values("b", shape).perf(perf_shape);
  };
  auto both = [&](const char* op, auto f) {
    const std::string name = op;
    r.add(name, {values("a", {2, 3, 4}).perf({8, 1024, 1024}), b_of(op, {3, 1}, {1024, 1})}, f)
        .golden(name + "_2x3x4_3x1");
    r.add(name + ".outer", {values("a", {2, 1, 5}).perf({1, 4096}), b_of(op, {1, 4, 1}, {2048, 1})},
          f)
        .golden(name + "_2x1x5_1x4x1");
  };
  both("add", [](const auto& in) { return add(in[0], in[1]); });
  both("sub", [](const auto& in) { return sub(in[0], in[1]); });
  both("mul", [](const auto& in) { return mul(in[0], in[1]); });
  both("div", [](const auto& in) { return div(in[0], in[1]); });
  // Same shapes, one side a transposed view (the strided kernel without broadcasting).
  r.add("sub.transposed",
        {values("a", {9, 6}).perf({4096, 2048}), values("b", {6, 9}).perf({2048, 4096})},
        [](const auto& in) { return sub(in[0].t(), in[1]); });

  r.add("mul_scalar", {values("x", kSmall).perf(kBig)},
        [](const auto& in) { return mul_scalar(in[0], -1.5); });
  r.add("add_scalar", {values("x", kSmall).perf(kBig)},
        [](const auto& in) { return add_scalar(in[0], 0.75); });
  r.add("neg", {values("x", kSmall).perf(kBig)}, [](const auto& in) { return neg(in[0]); });
}

void register_reductions(Registry& r) {
  auto x = [] { return values("x", kSmall, -2, 2).perf(kBig); };
  r.add("sum", {x()}, [](const auto& in) { return sum(in[0]); }).golden("sum_all");
  r.add("sum.dim_keepdim", {x()}, [](const auto& in) {
     return sum(in[0], 1, true);
   }).golden("sum_dim1_keepdim");
  r.add("sum.leading_dim", {x()}, [](const auto& in) { return sum(in[0], 0); });
  r.add("mean", {x()}, [](const auto& in) { return mean(in[0]); });
  r.add("mean.last_dim", {x()}, [](const auto& in) { return mean(in[0], -1); }).golden("mean_last");
  r.add("max", {x()}, [](const auto& in) {
     return max(in[0], -1);
   }).golden("max_last", {"values", "indices"});
  r.add("max.dim_keepdim", {x()}, [](const auto& in) { return max(in[0], 1, true); });
  r.add("argmax", {x()}, [](const auto& in) { return argmax(in[0], -1); });
  r.add("argmin", {x()}, [](const auto& in) { return argmin(in[0], -1); }).golden("argmin_last");
  r.add("topk", {x()}, [](const auto& in) {
     return topk(in[0], 3, -1);
   }).golden("topk_last", {"values", "indices"});
  r.add("topk.smallest_middle_dim", {x()}, [](const auto& in) { return topk(in[0], 2, 1, false); });
}

void register_softmax(Registry& r) {
  auto x = [] { return values("x", kSmall, -3, 3).perf(kBig); };
  r.add("softmax", {x()}, [](const auto& in) { return softmax(in[0], -1); }).golden("softmax_last");
  r.add("softmax.leading_dim", {x()}, [](const auto& in) { return softmax(in[0], 0); });
  r.add("log_softmax", {x()}, [](const auto& in) {
     return log_softmax(in[0], -1);
   }).golden("log_softmax_last");
}

void register_losses(Registry& r) {
  r.add("cross_entropy",
        {values("logits", {6, 11}, -3, 3).perf({2048, 8192}),
         indices("targets", {6}, 11).perf({2048}, 8192)},
        [](const auto& in) { return cross_entropy(in[0], in.ids[0]); })
      .golden("cross_entropy_mean");
  r.add("cross_entropy_weighted",
        {values("logits", {3, 4, 11}, -3, 3).perf({8, 256, 8192}),
         indices("targets", {3, 4}, 11).perf({8, 256}, 8192),
         constant("valid", {3}, 0.25, 1).perf({8})},
        [](const auto& in) { return cross_entropy_weighted(in[0], in.ids[0], in[1]); })
      .golden("cross_entropy_valid");
  r.add("mse_loss", {values("a", {3, 4}).perf(kBig), values("b", {3, 4}).perf(kBig)},
        [](const auto& in) { return mse_loss(in[0], in[1]); })
      .golden("mse_mean");
  r.add("l1_loss", {values("a", {3, 4}).perf(kBig), values("b", {3, 4}).perf(kBig)},
        [](const auto& in) { return l1_loss(in[0], in[1]); })
      .golden("l1_mean");
}

void register_normalize_and_dropout(Registry& r) {
  r.add("l2_normalize", {values("x", {4, 6}).perf(kBig)},
        [](const auto& in) { return l2_normalize(in[0], -1, 1e-12); })
      .golden("l2_normalize")
      .golden_by_rows();
  r.add("l2_normalize.leading_dim", {values("x", {15, 3}).perf({4096, 2048})},
        [](const auto& in) { return l2_normalize(in[0], 0); });
  // The generator is made afresh on every call, so every evaluation draws the same mask (finite
  // differences see a linear function) and the CUDA kernel draws the CPU's (one Philox stream).
  r.add("dropout", {values("x", {13, 101}).perf(kBig)}, [](const auto& in) {
    Generator gen(71);
    return dropout(in[0], 0.3, gen, true);
  });
}

}  // namespace

void register_pointwise_cases(Registry& r) {
  register_unary(r);
  register_elementwise(r);
  register_reductions(r);
  register_softmax(r);
  register_losses(r);
  register_normalize_and_dropout(r);
}

}  // namespace mentor::op_cases
