// Consistency of the CUDA matmul, normalisation, convolution and attention ops with the CPU
// implementation on fresh random inputs, forward and backward, float32 and bf16: batched and
// broadcast products, transposed operands, GEMM sizes that are not multiples of anything, the
// vectorised and generic norm kernels, cuDNN convolutions with stride/padding, and attention on
// both paths (the general cuBLAS path: float, explicit masks, other head dims; the flash kernels:
// bf16 with head dim 64 and 128, causal or not, KV-cache offsets, grouped-query heads).
//
// The reference is the CPU op in float32 on the same values (see test_cuda_ops.cpp): float32 must
// agree to 1e-5 relative, bf16 to 1e-2. Skipped with a warning when no GPU is present.
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 at -O3 reports a false -Wmaybe-uninitialized inside Shape::numel() once Shape
// temporaries are inlined into these test bodies (Shape zero-initialises its storage).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "catch.hpp"
#include "mentor/backend/cuda/gemm.hpp"
#include "mentor/core/cuda_api.hpp"
#include "mentor/ops/ops.hpp"
#include "op_harness.hpp"
#include "require_gpu.hpp"

namespace test_cuda_nn {

using namespace mentor;

namespace {

template <class T>
constexpr double tolerance() {
  return std::is_same_v<T, float> ? 1e-5 : 1e-2;
}

template <class T>
Tensor<T> uniform(const Shape& shape, uint64_t seed, float lo = -1.f, float hi = 1.f) {
  Generator gen(seed);
  return Tensor<float>::rand(shape, gen, lo, hi).template to<T>();
}

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

// See test_cuda_ops.cpp: f on the CPU in float32 and on the GPU in T, outputs and gradients
// compared.
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

}  // namespace

TEMPLATE_TEST_CASE("cuda nn: matmul and linear", "[cuda][nn]", float, bf16) {
  MENTOR_REQUIRE_GPU();
  using T = TestType;
  auto mm = [](const auto& in) { return mentor::matmul(in[0], in[1]); };
  compare<T>("[5,7] @ [7,9]", {uniform<T>({5, 7}, 1), uniform<T>({7, 9}, 2)}, {true, true}, mm);
  compare<T>("[3,5,7] @ [3,7,9]", {uniform<T>({3, 5, 7}, 3), uniform<T>({3, 7, 9}, 4)},
             {true, true}, mm);
  compare<T>("[2,3,5,7] @ [7,9] (shared weight)",
             {uniform<T>({2, 3, 5, 7}, 5), uniform<T>({7, 9}, 6)}, {true, true}, mm);
  compare<T>("[4,1,5,7] @ [3,7,9] (broadcast batch)",
             {uniform<T>({4, 1, 5, 7}, 7), uniform<T>({3, 7, 9}, 8)}, {true, true}, mm);
  compare<T>("transposed operands", {uniform<T>({7, 5}, 9), uniform<T>({9, 7}, 10)}, {true, true},
             [](const auto& in) { return mentor::matmul(in[0].t(), in[1].t()); });
  compare<T>("batched transposed views", {uniform<T>({3, 7, 5}, 11), uniform<T>({3, 9, 7}, 12)},
             {true, true}, [](const auto& in) {
               return mentor::matmul(in[0].transpose(1, 2), in[1].transpose(1, 2));
             });
  compare<T>("matrix-vector shapes", {uniform<T>({1, 33}, 13), uniform<T>({33, 1}, 14)},
             {true, true}, mm);
  compare<T>("larger odd GEMM", {uniform<T>({129, 257}, 15), uniform<T>({257, 191}, 16)},
             {true, true}, mm);
  compare<T>("linear with bias",
             {uniform<T>({4, 6, 10}, 17), uniform<T>({12, 10}, 18), uniform<T>({12}, 19)},
             {true, true, true},
             [](const auto& in) { return mentor::linear(in[0], in[1], in[2]); });
  compare<T>("linear without bias", {uniform<T>({37, 64}, 20), uniform<T>({48, 64}, 21)},
             {true, true}, [](const auto& in) { return mentor::linear(in[0], in[1]); });
}

TEST_CASE("cuda nn: TF32 is off by default and can be switched on", "[cuda][nn]") {
  MENTOR_REQUIRE_GPU();
  CHECK_FALSE(cuda::allow_tf32());
  const auto a = uniform<float>({256, 512}, 31), b = uniform<float>({512, 128}, 32);
  const Tensor<float> expected = mentor::matmul(a, b);
  cuda::set_allow_tf32(true);
  const Tensor<float> tf32 = mentor::matmul(a.to<CUDA>(), b.to<CUDA>()).to<CPU>();
  cuda::set_allow_tf32(false);
  const Tensor<float> full = mentor::matmul(a.to<CUDA>(), b.to<CUDA>()).to<CPU>();
  CHECK(test::rel_error(full, expected) <= 1e-5);
  CHECK(test::rel_error(tf32, expected) <= 5e-3);  // 10-bit mantissa inputs
}

TEMPLATE_TEST_CASE("cuda nn: rms_norm, layer_norm, group_norm", "[cuda][nn]", float, bf16) {
  MENTOR_REQUIRE_GPU();
  using T = TestType;
  // C = 96 and 1280: vectorised warp-per-row kernels; 1001: generic; 2050 and 4096: block per row.
  for (int64_t C : {int64_t{96}, int64_t{1001}, int64_t{1280}, int64_t{2050}, int64_t{4096}}) {
    compare<T>(mentor::detail::concat("rms_norm C=", C),
               {uniform<T>({37, C}, 41, -2.f, 2.f), uniform<T>({C}, 42, 0.5f, 1.5f)}, {true, true},
               [](const auto& in) { return mentor::rms_norm(in[0], in[1], 1e-5); });
    compare<T>(
        mentor::detail::concat("layer_norm C=", C),
        {uniform<T>({13, C}, 43, -2.f, 3.f), uniform<T>({C}, 44, 0.5f, 1.5f), uniform<T>({C}, 45)},
        {true, true, true},
        [](const auto& in) { return mentor::layer_norm(in[0], in[1], in[2], 1e-5); });
  }
  compare<T>("rms_norm without weight, 3-d", {uniform<T>({2, 5, 64}, 46)}, {true},
             [](const auto& in) {
               return mentor::rms_norm(in[0], std::decay_t<decltype(in[0])>(), 1e-6);
             });
  compare<T>("layer_norm of a transposed view", {uniform<T>({40, 6}, 47), uniform<T>({40}, 48)},
             {true, true}, [](const auto& in) {
               return mentor::layer_norm(in[0].t(), in[1], std::decay_t<decltype(in[0])>(), 1e-5);
             });
  compare<T>("group_norm",
             {uniform<T>({2, 8, 5, 7}, 49), uniform<T>({8}, 50, 0.5f, 1.5f), uniform<T>({8}, 51)},
             {true, true, true},
             [](const auto& in) { return mentor::group_norm(in[0], 4, in[1], in[2], 1e-6); });
  compare<T>("group_norm, large groups", {uniform<T>({1, 64, 40, 40}, 52, 1.f, 3.f)}, {true},
             [](const auto& in) {
               return mentor::group_norm(in[0], 32, std::decay_t<decltype(in[0])>(),
                                         std::decay_t<decltype(in[0])>(), 1e-6);
             });
}

TEMPLATE_TEST_CASE("cuda nn: conv2d, pad2d, upsample", "[cuda][nn]", float, bf16) {
  MENTOR_REQUIRE_GPU();
  using T = TestType;
  compare<T>("conv 3x3 pad 1 with bias",
             {uniform<T>({2, 3, 9, 11}, 61), uniform<T>({5, 3, 3, 3}, 62), uniform<T>({5}, 63)},
             {true, true, true},
             [](const auto& in) { return mentor::conv2d(in[0], in[1], in[2], 1, 1); });
  compare<T>("VQ downsample: pad (0,1,0,1) then 3x3 stride 2",
             {uniform<T>({2, 4, 8, 8}, 64), uniform<T>({4, 4, 3, 3}, 65), uniform<T>({4}, 66)},
             {true, true, true}, [](const auto& in) {
               return mentor::conv2d(mentor::pad2d(in[0], 0, 1, 0, 1), in[1], in[2], 2, 0);
             });
  compare<T>("1x1 conv without bias",
             {uniform<T>({3, 16, 5, 5}, 67), uniform<T>({8, 16, 1, 1}, 68)}, {true, true},
             [](const auto& in) {
               return mentor::conv2d(in[0], in[1], std::decay_t<decltype(in[0])>(), 1, 0);
             });
  compare<T>("upsample_nearest2x", {uniform<T>({2, 3, 5, 7}, 69)}, {true},
             [](const auto& in) { return mentor::upsample_nearest2x(in[0]); });
}

TEMPLATE_TEST_CASE("cuda nn: attention, general path", "[cuda][nn]", float, bf16) {
  MENTOR_REQUIRE_GPU();
  using T = TestType;
  // Head dim 24: never the flash kernels.
  const auto q = uniform<T>({2, 4, 13, 24}, 71), k = uniform<T>({2, 2, 17, 24}, 72),
             v = uniform<T>({2, 2, 17, 24}, 73);
  for (int kind = 0; kind < 2; ++kind) {
    compare<T>(kind ? "causal, Sq < Sk, GQA" : "no mask, GQA", {q, k, v}, {true, true, true},
               [kind](const auto& in) {
                 using D = device_of<decltype(in)>;
                 return mentor::scaled_dot_product_attention(
                     in[0], in[1], in[2], kind ? AttnMask<D>::causal() : AttnMask<D>{});
               });
  }
  // An explicit mask [B, 1, Sq, Sk] with one fully masked row (which outputs 0).
  Generator gen(74);
  Tensor<bool> mask = Tensor<float>::rand(Shape{2, 1, 13, 17}, gen, 0.f, 2.f)
                          .template to<int64_t>()
                          .template to<bool>();
  mask.select(0, 1).select(1, 3).fill_(false);
  Both<bool> m(mask);
  compare<T>("explicit mask with a fully masked row", {q, k, v}, {true, true, true},
             [&](const auto& in) {
               using D = device_of<decltype(in)>;
               return mentor::scaled_dot_product_attention(
                   in[0], in[1], in[2], AttnMask<D>::from(m.template on<D>()), 0.3);
             });
  compare<T>("different value dim",
             {uniform<T>({1, 2, 9, 16}, 75), uniform<T>({1, 2, 11, 16}, 76),
              uniform<T>({1, 2, 11, 40}, 77)},
             {true, true, true}, [](const auto& in) {
               return mentor::scaled_dot_product_attention(in[0], in[1], in[2]);
             });
}

TEST_CASE("cuda nn: attention, flash kernels (bf16, head dim 64 and 128)", "[cuda][nn]") {
  MENTOR_REQUIRE_GPU();
  using T = bf16;
  struct Case {
    int64_t B, H, Hk, Sq, Sk, D;
    bool causal;
  };
  const std::vector<Case> cases = {
      {2, 4, 4, 77, 77, 64, true},                                   // odd length, partial tiles
      {2, 4, 4, 77, 77, 64, false},  {1, 4, 2, 130, 130, 64, true},  // GQA, three query tiles
      {2, 2, 2, 5, 77, 64, true},                                    // KV-cache: the last 5 queries
      {1, 2, 1, 1, 200, 64, true},                                   // one decoding query
      {1, 2, 2, 65, 65, 128, true},                                  // head dim 128
      {1, 2, 2, 40, 96, 128, false},
  };
  for (const Case& c : cases) {
    const auto q = uniform<T>({c.B, c.H, c.Sq, c.D}, 81, -2.f, 2.f);
    const auto k = uniform<T>({c.B, c.Hk, c.Sk, c.D}, 82, -2.f, 2.f);
    const auto v = uniform<T>({c.B, c.Hk, c.Sk, c.D}, 83);
    const std::string name =
        mentor::detail::concat("B", c.B, " H", c.H, "/", c.Hk, " Sq", c.Sq, " Sk", c.Sk, " D", c.D,
                               c.causal ? " causal" : "");
    compare<T>(name, {q, k, v}, {true, true, true}, [&](const auto& in) {
      using D = device_of<decltype(in)>;
      return mentor::scaled_dot_product_attention(in[0], in[1], in[2],
                                                  c.causal ? AttnMask<D>::causal() : AttnMask<D>{});
    });
  }
}

}  // namespace test_cuda_nn
