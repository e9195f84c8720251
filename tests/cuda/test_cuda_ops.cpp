// Consistency of the CUDA ops with the CPU implementation on fresh random inputs, forward and
// backward, float32 and bf16: elementwise, unary, reductions, softmax, losses, normalisation,
// dropout, shape ops, embedding and rope. Odd sizes and non-contiguous views are included.
//
// The reference is the CPU op in float32 on the same values (bf16 inputs are rounded to bf16
// first, and so is the cotangent): float32 results must agree to 1e-5 relative (‖a − b‖ / ‖b‖),
// bf16 results to 1e-2. (Comparing bf16 against the CPU's own bf16 kernels would mostly measure
// the CPU's bf16 round-offs, e.g. its sequential bf16 accumulation in broadcast reductions.)
// Skipped with a warning when no GPU is present.
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 at -O3 reports a false -Wmaybe-uninitialized inside Shape::numel() once Shape
// temporaries are inlined into these test bodies (Shape zero-initialises its storage).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <cstdint>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

#include "catch.hpp"
#include "mentor/core/cuda_api.hpp"
#include "mentor/ops/ops.hpp"
#include "op_harness.hpp"
#include "require_gpu.hpp"

namespace test_cuda_ops {

using namespace mentor;

namespace {

template <class T>
constexpr double tolerance() {
  return std::is_same_v<T, float> ? 1e-5 : 1e-2;
}

// Uniform values in [lo, hi), rounded to T.
template <class T>
Tensor<T> uniform(const Shape& shape, uint64_t seed, float lo = -1.f, float hi = 1.f) {
  Generator gen(seed);
  return Tensor<float>::rand(shape, gen, lo, hi).template to<T>();
}

// A constant (indices, masks) on both devices.
template <class U>
struct Both {
  Tensor<U> cpu;
  Tensor<U, CUDA> gpu;
  explicit Both(const Tensor<U>& host) : cpu(host), gpu(host.template to<CUDA>()) {}
  template <class D>
  const Tensor<U, D>& on() const {
    if constexpr (std::is_same_v<D, CPU>) {
      return cpu;
    } else {
      return gpu;
    }
  }
};

template <class V>
using device_of = typename std::decay_t<V>::value_type::device_type;

// Runs f (generic over the tensor type) on the CPU in float32 and on the GPU in T with the same
// inputs and cotangent, then compares the outputs and the gradients of the inputs marked in `grad`.
template <class T, class F>
void compare(const std::string& what, const std::vector<Tensor<T>>& inputs,
             const std::vector<bool>& grad, F&& f, double tol = tolerance<T>(),
             double grad_tol = tolerance<T>()) {
  INFO(what << " (" << dtype_name<T>() << ")");
  std::vector<Tensor<float>> ref_in;
  std::vector<Tensor<T, CUDA>> gpu_in;
  for (size_t i = 0; i < inputs.size(); ++i) {
    Tensor<float> r = inputs[i].template to<float>().detach().contiguous();
    if (std::is_same_v<T, float>) r = r.clone().detach();
    Tensor<T, CUDA> g = inputs[i].template to<CUDA>().detach();
    if (i < grad.size() && grad[i]) {
      r.requires_grad_();
      g.requires_grad_();
    }
    ref_in.push_back(r);
    gpu_in.push_back(g);
  }
  Tensor<float> ref_out = f(ref_in);
  Tensor<T, CUDA> gpu_out = f(gpu_in);
  REQUIRE(gpu_out.shape() == ref_out.shape());
  const double err = test::rel_error(gpu_out.template to<CPU>(), ref_out);
  INFO("forward relative error " << err);
  CHECK(err <= tol);
  bool any_grad = false;
  for (bool g : grad) any_grad = any_grad || g;
  if (!any_grad) return;
  Generator gen(4242);
  Tensor<T> cot = Tensor<float>::randn(ref_out.shape(), gen).template to<T>();
  ref_out.backward(cot.template to<float>());
  gpu_out.backward(cot.template to<CUDA>());
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (i >= grad.size() || !grad[i]) continue;
    REQUIRE(ref_in[i].grad().defined());
    REQUIRE(gpu_in[i].grad().defined());
    const double gerr = test::rel_error(gpu_in[i].grad().template to<CPU>(), ref_in[i].grad());
    INFO("gradient of input " << i << " " << inputs[i].shape().str() << ": relative error "
                              << gerr);
    CHECK(gerr <= grad_tol);
  }
}

template <class T>
std::vector<T> host_values(const Tensor<T, CUDA>& t) {
  return t.template to<CPU>().to_vector();
}

}  // namespace

TEMPLATE_TEST_CASE("cuda ops: elementwise arithmetic with broadcasting and views", "[cuda][ops]",
                   float, bf16) {
  MENTOR_REQUIRE_GPU();
  using T = TestType;
  compare<T>("add broadcast [5,1,7] + [3,7]", {uniform<T>({5, 1, 7}, 1), uniform<T>({3, 7}, 2)},
             {true, true}, [](const auto& in) { return add(in[0], in[1]); });
  compare<T>("sub of a transposed view", {uniform<T>({9, 6}, 3), uniform<T>({6, 9}, 4)},
             {true, true}, [](const auto& in) { return sub(in[0].transpose(0, 1), in[1]); });
  compare<T>("mul flat odd length", {uniform<T>({1037}, 5), uniform<T>({1037}, 6)}, {true, true},
             [](const auto& in) { return mul(in[0], in[1]); });
  compare<T>("mul of an unaligned slice", {uniform<T>({1040}, 7), uniform<T>({1037}, 8)},
             {true, true}, [](const auto& in) { return mul(in[0].slice(0, 3, 1040), in[1]); });
  compare<T>("div broadcast [4,1] / [1,33]",
             {uniform<T>({4, 1}, 9), uniform<T>({1, 33}, 10, 0.5f, 2.f)}, {true, true},
             [](const auto& in) { return div(in[0], in[1]); });
  compare<T>("scalar ops", {uniform<T>({3, 129}, 11)}, {true},
             [](const auto& in) { return (in[0] * 2.5 + 1.0) / 3.0 - in[0] * -0.5; });
}

TEMPLATE_TEST_CASE("cuda ops: unary functions and their derivatives", "[cuda][ops]", float, bf16) {
  MENTOR_REQUIRE_GPU();
  using T = TestType;
  const Shape shape{3, 257};
  const auto any = uniform<T>(shape, 21, -3.f, 3.f);
  const auto positive = uniform<T>(shape, 22, 0.5f, 3.f);
  auto run = [&](const char* name, const Tensor<T>& x, auto op) {
    compare<T>(name, {x}, {true}, [&](const auto& in) { return op(in[0]); });
  };
  run("exp", any, [](const auto& x) { return mentor::exp(x); });
  run("log", positive, [](const auto& x) { return mentor::log(x); });
  run("sqrt", positive, [](const auto& x) { return mentor::sqrt(x); });
  run("rsqrt", positive, [](const auto& x) { return mentor::rsqrt(x); });
  run("tanh", any, [](const auto& x) { return mentor::tanh(x); });
  run("sigmoid", any, [](const auto& x) { return mentor::sigmoid(x); });
  run("silu", any, [](const auto& x) { return mentor::silu(x); });
  run("relu", any, [](const auto& x) { return mentor::relu(x); });
  run("abs", any, [](const auto& x) { return mentor::abs(x); });
  run("square", any, [](const auto& x) { return mentor::square(x); });
  run("pow 1.7", positive, [](const auto& x) { return mentor::pow(x, 1.7); });
  run("pow 0", positive, [](const auto& x) { return mentor::pow(x, 0.0); });
  run("gelu", any, [](const auto& x) { return mentor::gelu(x); });
  run("gelu tanh", any, [](const auto& x) { return mentor::gelu(x, GeluApprox::Tanh); });
  run("quick_gelu", any, [](const auto& x) { return mentor::quick_gelu(x); });
  run("silu of a transposed view", uniform<T>({33, 5}, 23),
      [](const auto& x) { return mentor::silu(x.transpose(0, 1)); });
}

TEMPLATE_TEST_CASE("cuda ops: sums, means, max, argmax, topk", "[cuda][ops]", float, bf16) {
  MENTOR_REQUIRE_GPU();
  using T = TestType;
  const auto x = uniform<T>({6, 35, 17}, 31);
  compare<T>("sum all", {x}, {true}, [](const auto& in) { return mentor::sum(in[0]); });
  compare<T>("sum all (long)", {uniform<T>({300001}, 32)}, {true},
             [](const auto& in) { return mentor::sum(in[0]); });
  for (int dim = 0; dim < 3; ++dim) {
    compare<T>(mentor::detail::concat("sum dim ", dim), {x}, {true},
               [dim](const auto& in) { return mentor::sum(in[0], dim); });
    compare<T>(mentor::detail::concat("mean dim keepdim ", dim), {x}, {true},
               [dim](const auto& in) { return mentor::mean(in[0], dim, true); });
    compare<T>(mentor::detail::concat("max dim ", dim), {x}, {true},
               [dim](const auto& in) { return mentor::max(in[0], dim).values; });
    CHECK(host_values(mentor::argmax(x.template to<CUDA>(), dim)) ==
          mentor::argmax(x, dim).to_vector());
    CHECK(host_values(mentor::argmin(x.template to<CUDA>(), dim)) ==
          mentor::argmin(x, dim).to_vector());
  }
  compare<T>("mean all of a view", {x}, {true},
             [](const auto& in) { return mentor::mean(in[0].transpose(0, 2)); });
  compare<T>("sum of a long row", {uniform<T>({3, 70001}, 33)}, {true},
             [](const auto& in) { return mentor::sum(in[0], 1); });
  // argmax over long rows (block per row) and ties (first index wins).
  const auto wide = uniform<T>({5, 3000}, 34);
  CHECK(host_values(mentor::argmax(wide.template to<CUDA>(), 1)) ==
        mentor::argmax(wide, 1).to_vector());
  const Tensor<T> ties = Tensor<float>::full(Shape{4, 50}, 1.f).template to<T>();
  CHECK(host_values(mentor::argmax(ties.template to<CUDA>(), 1)) == std::vector<int64_t>(4, 0));
  for (bool largest : {true, false}) {
    for (int64_t k : {int64_t{1}, int64_t{7}, int64_t{35}}) {
      compare<T>(
          mentor::detail::concat("topk values k=", k), {x}, {true},
          [k, largest](const auto& in) { return mentor::topk(in[0], k, 1, largest).values; });
      CHECK(host_values(mentor::topk(x.template to<CUDA>(), k, 1, largest).indices) ==
            mentor::topk(x, k, 1, largest).indices.to_vector());
    }
  }
  const auto vocab = uniform<T>({3, 16384}, 35);
  CHECK(host_values(mentor::topk(vocab.template to<CUDA>(), 1000, -1).indices) ==
        mentor::topk(vocab, 1000, -1).indices.to_vector());
}

TEMPLATE_TEST_CASE("cuda ops: softmax and log_softmax", "[cuda][ops]", float, bf16) {
  MENTOR_REQUIRE_GPU();
  using T = TestType;
  for (const Shape& shape : {Shape{7, 13}, Shape{3, 2000}, Shape{2, 5, 1025}}) {
    const auto x = uniform<T>(shape, 41, -4.f, 4.f);
    compare<T>(mentor::detail::concat("softmax ", shape.str()), {x}, {true},
               [](const auto& in) { return mentor::softmax(in[0], -1); });
    compare<T>(mentor::detail::concat("log_softmax ", shape.str()), {x}, {true},
               [](const auto& in) { return mentor::log_softmax(in[0], -1); });
  }
  compare<T>("softmax over dim 0", {uniform<T>({9, 4, 3}, 42)}, {true},
             [](const auto& in) { return mentor::softmax(in[0], 0); });
}

TEMPLATE_TEST_CASE("cuda ops: losses", "[cuda][ops]", float, bf16) {
  MENTOR_REQUIRE_GPU();
  using T = TestType;
  for (const Shape& shape : {Shape{37, 1003}, Shape{16, 4096}, Shape{5, 9}}) {
    Generator gen(51);
    Tensor<int64_t> targets =
        Tensor<float>::rand(Shape{shape[0]}, gen, 0.f, static_cast<float>(shape[1]))
            .template to<int64_t>();
    Both<int64_t> t(targets);
    compare<T>(mentor::detail::concat("cross_entropy ", shape.str()),
               {uniform<T>(shape, 52, -5.f, 5.f)}, {true}, [&](const auto& in) {
                 using D = device_of<decltype(in)>;
                 return mentor::cross_entropy(in[0], t.template on<D>());
               });
  }
  {
    Generator gen(53);
    Tensor<int64_t> targets =
        Tensor<float>::rand(Shape{3, 5}, gen, 0.f, 777.f).template to<int64_t>();
    Both<int64_t> t(targets);
    const Tensor<T> valid = Tensor<float>::from_vector({1.f, 0.f, 1.f}).template to<T>();
    compare<T>("cross_entropy_weighted", {uniform<T>({3, 5, 777}, 54, -3.f, 3.f), valid},
               {true, false}, [&](const auto& in) {
                 using D = device_of<decltype(in)>;
                 return mentor::cross_entropy_weighted(in[0], t.template on<D>(), in[1]);
               });
  }
  compare<T>("mse_loss", {uniform<T>({7, 33}, 55), uniform<T>({7, 33}, 56)}, {true, true},
             [](const auto& in) { return mentor::mse_loss(in[0], in[1]); });
  compare<T>("l1_loss", {uniform<T>({7, 33}, 57), uniform<T>({7, 33}, 58)}, {true, true},
             [](const auto& in) { return mentor::l1_loss(in[0], in[1]); });
}

TEMPLATE_TEST_CASE("cuda ops: l2_normalize", "[cuda][ops]", float, bf16) {
  MENTOR_REQUIRE_GPU();
  using T = TestType;
  compare<T>("l2_normalize last dim", {uniform<T>({9, 77}, 61)}, {true},
             [](const auto& in) { return mentor::l2_normalize(in[0]); });
  compare<T>("l2_normalize dim 0", {uniform<T>({1500, 3}, 62)}, {true},
             [](const auto& in) { return mentor::l2_normalize(in[0], 0); });
}

TEMPLATE_TEST_CASE("cuda ops: dropout draws the CPU's mask", "[cuda][ops]", float, bf16) {
  MENTOR_REQUIRE_GPU();
  using T = TestType;
  compare<T>("dropout p=0.3", {uniform<T>({13, 101}, 71)}, {true}, [](const auto& in) {
    Generator gen(777);
    gen.offset = 5;
    return mentor::dropout(in[0], 0.3, gen, true);
  });
}

TEMPLATE_TEST_CASE("cuda ops: shape ops", "[cuda][ops]", float, bf16) {
  MENTOR_REQUIRE_GPU();
  using T = TestType;
  compare<T>("concat dim 1",
             {uniform<T>({3, 4, 5}, 81), uniform<T>({3, 2, 5}, 82), uniform<T>({3, 7, 5}, 83)},
             {true, true, true}, [](const auto& in) {
               return mentor::concat(std::vector{in[0], in[1], in[2]}, 1);
             });
  compare<T>("stack dim 2", {uniform<T>({3, 4}, 84), uniform<T>({3, 4}, 85)}, {true, true},
             [](const auto& in) {
               return mentor::stack(std::vector{in[0], in[1]}, 2);
             });
  compare<T>("split and chunk views", {uniform<T>({6, 10}, 86)}, {true}, [](const auto& in) {
    auto parts = mentor::split(in[0], {3, 7}, 1);
    auto halves = mentor::chunk(in[0], 2, 0);
    return mentor::sum(mentor::mul(parts[1], parts[1]), 1) +
           mentor::sum(mentor::sum(halves[0], 1), 0);
  });
  {
    Both<int64_t> ids(Tensor<int64_t>::from_vector({4, 0, 4, 2, 4}));
    compare<T>("index_select dim 1 (repeats)", {uniform<T>({3, 6, 5}, 87)}, {true},
               [&](const auto& in) {
                 using D = device_of<decltype(in)>;
                 return mentor::index_select(in[0], 1, ids.template on<D>());
               });
  }
  {
    const Shape ids_shape{3, 4};
    Both<int64_t> ids(
        Tensor<int64_t>::from_vector({0, 5, 5, 1, 2, 2, 2, 0, 4, 3, 1, 5}, ids_shape));
    compare<T>("gather dim 1 (repeats)", {uniform<T>({3, 6}, 88)}, {true}, [&](const auto& in) {
      using D = device_of<decltype(in)>;
      return mentor::gather(in[0], 1, ids.template on<D>());
    });
  }
  {
    Generator gen(89);
    // Uniform in [0, 2) truncated: half true, half false.
    Both<bool> mask(
        Tensor<float>::rand(Shape{1, 9}, gen, 0.f, 2.f).template to<int64_t>().template to<bool>());
    Both<bool> cond(
        Tensor<float>::rand(Shape{4, 1}, gen, 0.f, 2.f).template to<int64_t>().template to<bool>());
    compare<T>("masked_fill broadcast", {uniform<T>({4, 9}, 90)}, {true}, [&](const auto& in) {
      using D = device_of<decltype(in)>;
      return mentor::masked_fill(in[0], mask.template on<D>(), -2.5);
    });
    compare<T>("where broadcast", {uniform<T>({4, 9}, 91), uniform<T>({9}, 92)}, {true, true},
               [&](const auto& in) {
                 using D = device_of<decltype(in)>;
                 return mentor::where(cond.template on<D>(), in[0], in[1]);
               });
  }
  // Integer tensors through the element-generic ops.
  Tensor<int64_t> a = Tensor<int64_t>::arange(12).reshape(Shape{3, 4});
  Tensor<int64_t> idx = Tensor<int64_t>::from_vector({2, 0});
  CHECK(host_values(mentor::index_select(a.to<CUDA>(), 0, idx.to<CUDA>())) ==
        mentor::index_select(a, 0, idx).to_vector());
  CHECK(host_values(mentor::concat(std::vector{a.to<CUDA>(), a.to<CUDA>()}, 1)) ==
        mentor::concat(std::vector{a, a}, 1).to_vector());
}

TEMPLATE_TEST_CASE("cuda ops: embedding", "[cuda][ops]", float, bf16) {
  MENTOR_REQUIRE_GPU();
  using T = TestType;
  const Shape ids_shape{4, 9};
  Generator gen(101);
  Both<int64_t> ids(Tensor<float>::rand(ids_shape, gen, 0.f, 20.f).template to<int64_t>());
  for (int64_t C : {int64_t{33}, int64_t{64}}) {
    compare<T>(mentor::detail::concat("embedding C=", C), {uniform<T>({20, C}, 102)}, {true},
               [&](const auto& in) {
                 using D = device_of<decltype(in)>;
                 return mentor::embedding(in[0], ids.template on<D>());
               });
  }
  Tensor<int64_t> bad = Tensor<int64_t>::from_vector({1, 25});
  CHECK_THROWS_AS(mentor::embedding(uniform<T>({20, 8}, 103).template to<CUDA>(), bad.to<CUDA>()),
                  Error);
}

TEMPLATE_TEST_CASE("cuda ops: rope", "[cuda][ops]", float, bf16) {
  MENTOR_REQUIRE_GPU();
  using T = TestType;
  Tensor<float> table = rope_2d_table<CPU>(3, 16, 1, RopePrefix::Identity);  // 10 rows
  Tensor<float> table_gpu = rope_2d_table<CUDA>(3, 16, 1, RopePrefix::Identity).to<CPU>();
  CHECK(test::rel_error(table_gpu, table) == 0.0);
  Both<float> t(table);
  compare<T>("apply_rope", {uniform<T>({2, 10, 3, 16}, 111)}, {true}, [&](const auto& in) {
    using D = device_of<decltype(in)>;
    return mentor::apply_rope(in[0], t.template on<D>());
  });
  compare<T>("apply_rope, narrowed table (decoding)", {uniform<T>({2, 4, 3, 16}, 112)}, {true},
             [&](const auto& in) {
               using D = device_of<decltype(in)>;
               return mentor::apply_rope(in[0], t.template on<D>().narrow(0, 5, 4));
             });
}

}  // namespace test_cuda_ops
