#pragma once
// The simple layers: Linear, Embedding, RMSNorm, LayerNorm, GroupNorm, Conv2d. Parameter names
// follow PyTorch's (`weight`, `bias`), so upstream checkpoints load by name.
#include <cmath>

#include "mentor/nn/module.hpp"
#include "mentor/ops/conv.hpp"
#include "mentor/ops/embedding.hpp"
#include "mentor/ops/matmul.hpp"
#include "mentor/ops/norm.hpp"

namespace mentor::nn {

// Initialisers (upstream LlamaGen: every Linear and Embedding ~ N(0, 0.02), biases 0).
template <class T, class D>
Tensor<T, D> normal_init(const Shape& shape, Generator& gen, double std = 0.02) {
  return Tensor<float, D>::randn(shape, gen, 0.f, static_cast<float>(std)).template to<T>();
}
template <class T, class D>
Tensor<T, D> uniform_init(const Shape& shape, Generator& gen, double bound) {
  return Tensor<float, D>::rand(shape, gen, static_cast<float>(-bound), static_cast<float>(bound))
      .template to<T>();
}

template <class T, class D = CPU>
class Linear : public Module<T, D> {
 public:
  Linear() = default;
  Linear(int64_t in_features, int64_t out_features, bool bias, Generator& gen,
         double init_std = 0.02)
      : weight(normal_init<T, D>({out_features, in_features}, gen, init_std).requires_grad_()) {
    if (bias) this->bias = Tensor<T, D>::zeros({out_features}).requires_grad_();
  }
  Tensor<T, D> operator()(const Tensor<T, D>& x) const { return linear(x, weight, bias); }
  void visit(Visitor<T, D>& v) override {
    v.parameter("weight", weight);
    if (bias.defined()) v.parameter("bias", bias);
  }
  int64_t in_features() const { return weight.size(1); }
  int64_t out_features() const { return weight.size(0); }

  Tensor<T, D> weight, bias;  // weight [out, in]; bias [out] or undefined
};

template <class T, class D = CPU>
class Embedding : public Module<T, D> {
 public:
  Embedding() = default;
  Embedding(int64_t count, int64_t dim, Generator& gen, double init_std = 0.02)
      : weight(normal_init<T, D>({count, dim}, gen, init_std).requires_grad_()) {}
  Tensor<T, D> operator()(const Tensor<int64_t, D>& ids) const { return embedding(weight, ids); }
  void visit(Visitor<T, D>& v) override { v.parameter("weight", weight); }

  Tensor<T, D> weight;  // [count, dim]
};

template <class T, class D = CPU>
class RMSNorm : public Module<T, D> {
 public:
  RMSNorm() = default;
  explicit RMSNorm(int64_t dim, double eps = 1e-5)
      : weight(Tensor<T, D>::ones({dim}).requires_grad_()), eps(eps) {}
  Tensor<T, D> operator()(const Tensor<T, D>& x) const { return rms_norm(x, weight, eps); }
  void visit(Visitor<T, D>& v) override { v.parameter("weight", weight); }

  Tensor<T, D> weight;
  double eps = 1e-5;
};

template <class T, class D = CPU>
class LayerNorm : public Module<T, D> {
 public:
  LayerNorm() = default;
  explicit LayerNorm(int64_t dim, double eps = 1e-5, bool bias = true)
      : weight(Tensor<T, D>::ones({dim}).requires_grad_()), eps(eps) {
    if (bias) this->bias = Tensor<T, D>::zeros({dim}).requires_grad_();
  }
  Tensor<T, D> operator()(const Tensor<T, D>& x) const { return layer_norm(x, weight, bias, eps); }
  void visit(Visitor<T, D>& v) override {
    v.parameter("weight", weight);
    if (bias.defined()) v.parameter("bias", bias);
  }

  Tensor<T, D> weight, bias;
  double eps = 1e-5;
};

template <class T, class D = CPU>
class GroupNorm : public Module<T, D> {
 public:
  GroupNorm() = default;
  GroupNorm(int64_t groups, int64_t channels, double eps = 1e-6)
      : weight(Tensor<T, D>::ones({channels}).requires_grad_()),
        bias(Tensor<T, D>::zeros({channels}).requires_grad_()),
        groups(groups),
        eps(eps) {}
  Tensor<T, D> operator()(const Tensor<T, D>& x) const {
    return group_norm(x, groups, weight, bias, eps);
  }
  void visit(Visitor<T, D>& v) override {
    v.parameter("weight", weight);
    v.parameter("bias", bias);
  }

  Tensor<T, D> weight, bias;
  int64_t groups = 32;
  double eps = 1e-6;
};

// nn.BatchNorm2d (also 1d and 3d: x [N, C, *]): batch statistics in training mode, moving the
// running ones (momentum 0.1, unbiased variance, as torch); running statistics in eval mode. State
// names are torch's, except num_batches_tracked (an int64 counter torch keeps for momentum=None),
// which mentor does not have: ignore that key when loading a torch state dict.
template <class T, class D = CPU>
class BatchNorm : public Module<T, D> {
 public:
  BatchNorm() = default;
  explicit BatchNorm(int64_t channels, double eps = 1e-5, double momentum = 0.1)
      : weight(Tensor<T, D>::ones({channels}).requires_grad_()),
        bias(Tensor<T, D>::zeros({channels}).requires_grad_()),
        running_mean(Tensor<T, D>::zeros({channels})),
        running_var(Tensor<T, D>::ones({channels})),
        eps(eps),
        momentum(momentum) {}
  Tensor<T, D> operator()(const Tensor<T, D>& x) const {
    return batch_norm(x, weight, bias, running_mean, running_var, this->training(), momentum, eps);
  }
  void visit(Visitor<T, D>& v) override {
    v.parameter("weight", weight);
    v.parameter("bias", bias);
    v.buffer("running_mean", running_mean);
    v.buffer("running_var", running_var);
  }

  Tensor<T, D> weight, bias, running_mean, running_var;
  double eps = 1e-5;
  double momentum = 0.1;
};

template <class T, class D = CPU>
class Conv2d : public Module<T, D> {
 public:
  Conv2d() = default;
  // PyTorch's default init (kaiming-uniform with a = sqrt(5) => U(-1/sqrt(fan_in),
  // 1/sqrt(fan_in))).
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride, int64_t padding,
         Generator& gen, bool bias = true)
      : stride(stride), padding(padding) {
    double bound = 1.0 / std::sqrt(static_cast<double>(in_channels * kernel * kernel));
    weight = uniform_init<T, D>({out_channels, in_channels, kernel, kernel}, gen, bound)
                 .requires_grad_();
    if (bias) this->bias = uniform_init<T, D>({out_channels}, gen, bound).requires_grad_();
  }
  Tensor<T, D> operator()(const Tensor<T, D>& x) const {
    return conv2d(x, weight, bias, stride, padding);
  }
  void visit(Visitor<T, D>& v) override {
    v.parameter("weight", weight);
    if (bias.defined()) v.parameter("bias", bias);
  }

  Tensor<T, D> weight, bias;  // weight [out, in, k, k]
  int64_t stride = 1, padding = 0;
};

}  // namespace mentor::nn
