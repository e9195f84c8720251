#pragma once
// The ops and the tensor, instantiated once for mentor's closed set of element types, for this
// repository's own programs (tests, examples, tools): a build speed-up, not part of the library.
//
// Compiling an op for a type (its kernels, its backward, Eigen) took most of each test program's
// compile time, and every translation unit did it again for the same few types. Here each op of
// mentor/ops/ops.hpp and every member of Tensor<T, D> is declared `extern template` for
// T = float, double, bf16 on the CPU (and float, bf16 on CUDA when the CUDA backend is built), and
// src/instances/ops_<type>.cpp define them once, in the mentor_instances library. A translation
// unit that includes this header (first, through the precompiled header of cmake/Instances.cmake)
// then only calls them. User code never sees it and stays header-only.
//
// The lists are an optimisation only: an op or a type missing from them is instantiated in place
// as before. An op whose signature changes must change here too (the compiler says "does not
// match any template declaration").
#include <cstdint>
#include <vector>

#include "mentor/core/tensor.hpp"
#include "mentor/ops/ops.hpp"

// Every public op for element type T on device D. PREFIX is `extern` for the declarations (this
// header) or empty for the definitions (src/instances/*.cpp).
#define MENTOR_OPS_INSTANCES(PREFIX, T, D)                                                        \
  PREFIX template class Tensor<T, D>;                                                             \
  /* conv.hpp */                                                                                  \
  PREFIX template Tensor<T, D> conv2d(const Tensor<T, D>&, const Tensor<T, D>&,                   \
                                      const Tensor<T, D>&, int64_t, int64_t);                     \
  PREFIX template Tensor<T, D> pad2d(const Tensor<T, D>&, int64_t, int64_t, int64_t, int64_t);    \
  PREFIX template Tensor<T, D> upsample_nearest2x(const Tensor<T, D>&);                           \
  /* dropout.hpp */                                                                               \
  PREFIX template Tensor<T, D> dropout(const Tensor<T, D>&, double, Generator&, bool);            \
  /* elementwise.hpp */                                                                           \
  PREFIX template Tensor<T, D> add(const Tensor<T, D>&, const Tensor<T, D>&);                     \
  PREFIX template Tensor<T, D> sub(const Tensor<T, D>&, const Tensor<T, D>&);                     \
  PREFIX template Tensor<T, D> mul(const Tensor<T, D>&, const Tensor<T, D>&);                     \
  PREFIX template Tensor<T, D> div(const Tensor<T, D>&, const Tensor<T, D>&);                     \
  PREFIX template Tensor<T, D> mul_scalar(const Tensor<T, D>&, double);                           \
  PREFIX template Tensor<T, D> add_scalar(const Tensor<T, D>&, double);                           \
  PREFIX template Tensor<T, D> neg(const Tensor<T, D>&);                                          \
  /* embedding.hpp */                                                                             \
  PREFIX template Tensor<T, D> embedding(const Tensor<T, D>&, const Tensor<int64_t, D>&);         \
  /* loss.hpp */                                                                                  \
  PREFIX template Tensor<T, D> cross_entropy(const Tensor<T, D>&, const Tensor<int64_t, D>&);     \
  PREFIX template Tensor<T, D> cross_entropy_weighted(                                            \
      const Tensor<T, D>&, const Tensor<int64_t, D>&, const Tensor<T, D>&);                       \
  PREFIX template Tensor<T, D> mse_loss(const Tensor<T, D>&, const Tensor<T, D>&);                \
  PREFIX template Tensor<T, D> l1_loss(const Tensor<T, D>&, const Tensor<T, D>&);                 \
  /* matmul.hpp */                                                                                \
  PREFIX template Tensor<T, D> matmul(const Tensor<T, D>&, const Tensor<T, D>&);                  \
  PREFIX template Tensor<T, D> linear(const Tensor<T, D>&, const Tensor<T, D>&,                   \
                                      const Tensor<T, D>&);                                       \
  /* norm.hpp, normalize.hpp */                                                                   \
  PREFIX template Tensor<T, D> rms_norm(const Tensor<T, D>&, const Tensor<T, D>&, double);        \
  PREFIX template Tensor<T, D> layer_norm(const Tensor<T, D>&, const Tensor<T, D>&,               \
                                          const Tensor<T, D>&, double);                           \
  PREFIX template Tensor<T, D> group_norm(const Tensor<T, D>&, int64_t, const Tensor<T, D>&,      \
                                          const Tensor<T, D>&, double);                           \
  PREFIX template Tensor<T, D> l2_normalize(const Tensor<T, D>&, int64_t, double);                \
  /* reduce.hpp */                                                                                \
  PREFIX template Tensor<T, D> sum(const Tensor<T, D>&);                                          \
  PREFIX template Tensor<T, D> sum(const Tensor<T, D>&, int64_t, bool);                           \
  PREFIX template Tensor<T, D> mean(const Tensor<T, D>&);                                         \
  PREFIX template Tensor<T, D> mean(const Tensor<T, D>&, int64_t, bool);                          \
  PREFIX template MaxResult<T, D> max(const Tensor<T, D>&, int64_t, bool);                        \
  PREFIX template Tensor<int64_t, D> argmax(const Tensor<T, D>&, int64_t, bool);                  \
  PREFIX template Tensor<int64_t, D> argmin(const Tensor<T, D>&, int64_t, bool);                  \
  PREFIX template TopKResult<T, D> topk(const Tensor<T, D>&, int64_t, int64_t, bool);             \
  /* rope.hpp, attention.hpp */                                                                   \
  PREFIX template Tensor<T, D> apply_rope(const Tensor<T, D>&, const Tensor<float, D>&);          \
  PREFIX template Tensor<T, D> scaled_dot_product_attention(                                      \
      const Tensor<T, D>&, const Tensor<T, D>&, const Tensor<T, D>&, const AttnMask<D>&, double); \
  /* shape_ops.hpp */                                                                             \
  PREFIX template Tensor<T, D> concat(const std::vector<Tensor<T, D>>&, int64_t);                 \
  PREFIX template Tensor<T, D> stack(const std::vector<Tensor<T, D>>&, int64_t);                  \
  PREFIX template std::vector<Tensor<T, D>> split(const Tensor<T, D>&,                            \
                                                  const std::vector<int64_t>&, int64_t);          \
  PREFIX template std::vector<Tensor<T, D>> chunk(const Tensor<T, D>&, int64_t, int64_t);         \
  PREFIX template Tensor<T, D> index_select(const Tensor<T, D>&, int64_t,                         \
                                            const Tensor<int64_t, D>&);                           \
  PREFIX template Tensor<T, D> gather(const Tensor<T, D>&, int64_t, const Tensor<int64_t, D>&);   \
  PREFIX template Tensor<T, D> where(const Tensor<bool, D>&, const Tensor<T, D>&,                 \
                                     const Tensor<T, D>&);                                        \
  PREFIX template Tensor<T, D> masked_fill(const Tensor<T, D>&, const Tensor<bool, D>&, double);  \
  /* softmax.hpp */                                                                               \
  PREFIX template Tensor<T, D> softmax(const Tensor<T, D>&, int64_t);                             \
  PREFIX template Tensor<T, D> log_softmax(const Tensor<T, D>&, int64_t);                         \
  /* unary.hpp */                                                                                 \
  PREFIX template Tensor<T, D> exp(const Tensor<T, D>&);                                          \
  PREFIX template Tensor<T, D> log(const Tensor<T, D>&);                                          \
  PREFIX template Tensor<T, D> sqrt(const Tensor<T, D>&);                                         \
  PREFIX template Tensor<T, D> rsqrt(const Tensor<T, D>&);                                        \
  PREFIX template Tensor<T, D> tanh(const Tensor<T, D>&);                                         \
  PREFIX template Tensor<T, D> sigmoid(const Tensor<T, D>&);                                      \
  PREFIX template Tensor<T, D> silu(const Tensor<T, D>&);                                         \
  PREFIX template Tensor<T, D> relu(const Tensor<T, D>&);                                         \
  PREFIX template Tensor<T, D> abs(const Tensor<T, D>&);                                          \
  PREFIX template Tensor<T, D> square(const Tensor<T, D>&);                                       \
  PREFIX template Tensor<T, D> pow(const Tensor<T, D>&, double);                                  \
  PREFIX template Tensor<T, D> gelu(const Tensor<T, D>&, GeluApprox);                             \
  PREFIX template Tensor<T, D> quick_gelu(const Tensor<T, D>&);                                   \
  PREFIX template Tensor<T, D> leaky_relu(const Tensor<T, D>&, double);

namespace mentor {
MENTOR_OPS_INSTANCES(extern, float, CPU)
MENTOR_OPS_INSTANCES(extern, double, CPU)
MENTOR_OPS_INSTANCES(extern, bf16, CPU)
#ifdef MENTOR_WITH_CUDA
MENTOR_OPS_INSTANCES(extern, float, CUDA)
MENTOR_OPS_INSTANCES(extern, bf16, CUDA)
#endif
}  // namespace mentor
