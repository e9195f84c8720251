#pragma once
// Adam and AdamW over float32 parameters (a bf16 model trains through float32 master copies, see
// mixed_precision.hpp), with float32 moments, per-group weight decay and per-parameter step counts.
//
// The update is PyTorch's single-tensor implementation (torch.optim.Adam / AdamW, 1.13), in
// float32 with the scalars computed in double and rounded once, in the same order of operations,
// so a float32 run follows PyTorch to rounding (tests/train/test_optim.cpp checks the golden file):
//   t ← t + 1 (per parameter, counted only on steps where it has a gradient)
//   AdamW: p ← p · (1 − lr·wd)                                 (decoupled decay)
//   Adam:  g ← g + wd · p                                      (L2 penalty in the gradient)
//   m ← β1 m + (1 − β1) g;   v ← β2 v + (1 − β2) g²
//   p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + eps)
// A parameter whose gradient is undefined (frozen, or unused this step) is skipped entirely, as
// PyTorch skips p.grad is None; its moments are allocated on its first gradient, so frozen
// parameters cost no optimizer memory.
//
// Weight decay applies per group; decay_groups() builds MENTOR's two groups (decay on parameters of
// 2 or more dimensions, none on biases and norm weights).
#include <cmath>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "mentor/backend/cpu/parallel.hpp"
#include "mentor/backend/cuda/fused.hpp"
#include "mentor/core/error.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/nn/module.hpp"
#include "mentor/ops/apply.hpp"
#include "mentor/ops/elementwise.hpp"

namespace mentor::train {

template <class D = CPU>
using NamedParams = std::vector<std::pair<std::string, Tensor<float, D>*>>;

template <class D = CPU>
struct ParamGroup {
  NamedParams<D> params;
  double weight_decay = 0.0;
};

// MENTOR's grouping: weight decay `weight_decay` on trainable parameters with 2 or more dimensions,
// 0 on the rest (biases, norm weights, scales). Frozen parameters (requires_grad false) are left
// out unless `skip_frozen` is false (float32 master copies, which never require grad themselves).
// Empty groups are dropped.
template <class D>
std::vector<ParamGroup<D>> decay_groups(const NamedParams<D>& params, double weight_decay,
                                        bool skip_frozen = true) {
  ParamGroup<D> decay{{}, weight_decay}, no_decay{{}, 0.0};
  for (const auto& [name, tensor] : params) {
    MENTOR_CHECK(tensor != nullptr, "decay_groups: parameter '", name, "' is null");
    if (skip_frozen && !tensor->requires_grad()) continue;
    (tensor->dim() >= 2 ? decay : no_decay).params.emplace_back(name, tensor);
  }
  std::vector<ParamGroup<D>> groups;
  if (!decay.params.empty()) groups.push_back(std::move(decay));
  if (!no_decay.params.empty()) groups.push_back(std::move(no_decay));
  return groups;
}

template <class D>
std::vector<ParamGroup<D>> decay_groups(nn::Module<float, D>& module, double weight_decay) {
  return decay_groups<D>(module.named_parameters(), weight_decay);
}

struct AdamOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;

  void validate(const char* who) const {
    MENTOR_CHECK(beta1 >= 0 && beta1 < 1, who, ": beta1 must lie in [0, 1), got ", beta1);
    MENTOR_CHECK(beta2 >= 0 && beta2 < 1, who, ": beta2 must lie in [0, 1), got ", beta2);
    MENTOR_CHECK(eps >= 0 && std::isfinite(eps), who, ": eps must be finite and >= 0, got ", eps);
  }
};

enum class WeightDecayMode {
  decoupled,  // AdamW: p ← p(1 − lr·wd)
  l2          // Adam:  g ← g + wd·p
};

namespace detail {

// Scalars of one update, rounded to float once as PyTorch's float kernels do.
struct AdamScalars {
  float decay_factor = 1.f;  // decoupled: 1 − lr·wd
  float l2 = 0.f;            // coupled: wd
  float beta1 = 0.f, one_minus_beta1 = 0.f, beta2 = 0.f, one_minus_beta2 = 0.f;
  float step_size = 0.f;              // lr / (1 − β1ᵗ)
  float bias_correction2_sqrt = 1.f;  // √(1 − β2ᵗ)
  float eps = 0.f;
  bool decoupled = true;
};

inline AdamScalars adam_scalars(const AdamOptions& o, WeightDecayMode mode, double lr, double wd,
                                int64_t t) {
  AdamScalars s;
  s.decoupled = mode == WeightDecayMode::decoupled;
  if (s.decoupled)
    s.decay_factor = static_cast<float>(1.0 - lr * wd);
  else
    s.l2 = static_cast<float>(wd);
  s.beta1 = static_cast<float>(o.beta1);
  s.one_minus_beta1 = static_cast<float>(1.0 - o.beta1);
  s.beta2 = static_cast<float>(o.beta2);
  s.one_minus_beta2 = static_cast<float>(1.0 - o.beta2);
  const double bias_correction1 = 1.0 - std::pow(o.beta1, static_cast<double>(t));
  const double bias_correction2 = 1.0 - std::pow(o.beta2, static_cast<double>(t));
  s.step_size = static_cast<float>(lr / bias_correction1);
  s.bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
  s.eps = static_cast<float>(o.eps);
  return s;
}

// One tensor, in place. Elements are independent, so the split over threads cannot change a bit.
inline void adam_update_cpu(float* param, const float* grad, float* m, float* v, int64_t n,
                            const AdamScalars& s, bool apply_decay) {
  cpu::parallel_for(n, 1 << 14, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      float g = grad[i];
      float p = param[i];
      if (apply_decay) {
        if (s.decoupled)
          p = p * s.decay_factor;
        else
          g = g + s.l2 * p;
      }
      const float mi = m[i] * s.beta1 + s.one_minus_beta1 * g;
      const float vi = v[i] * s.beta2 + s.one_minus_beta2 * g * g;
      m[i] = mi;
      v[i] = vi;
      const float denom = std::sqrt(vi) / s.bias_correction2_sqrt + s.eps;
      param[i] = p + (-s.step_size) * mi / denom;
    }
  });
}

// One update of every listed parameter, in place: params[i] (contiguous) with its contiguous
// gradient grads[i], moments m[i], v[i], step count steps[i] (already incremented) and weight decay
// decays[i]. On the CPU tensor by tensor; on CUDA one fused launch per (weight decay, step count)
// bucket, the L2 term of Adam added to the gradient first.
struct AdamStep {
  AdamOptions options;
  WeightDecayMode mode;
  double lr;
  std::vector<int64_t> steps;
  std::vector<double> decays;

  void forward_cpu(std::vector<Tensor<float, CPU>>& params,
                   const std::vector<Tensor<float, CPU>>& grads, std::vector<Tensor<float, CPU>>& m,
                   std::vector<Tensor<float, CPU>>& v) const {
    for (size_t i = 0; i < params.size(); ++i) {
      const AdamScalars s = adam_scalars(options, mode, lr, decays[i], steps[i]);
      adam_update_cpu(params[i].data(), grads[i].data(), m[i].data(), v[i].data(),
                      params[i].numel(), s, decays[i] != 0.0);
    }
  }
  template <class T>
  void forward_cuda(std::vector<Tensor<T, CUDA>>& params, const std::vector<Tensor<T, CUDA>>& grads,
                    std::vector<Tensor<float, CUDA>>& m,
                    std::vector<Tensor<float, CUDA>>& v) const {
    struct Bucket {
      std::vector<cuda::AdamWTensor<T>> tensors;
      std::vector<Tensor<T, CUDA>> keep_alive;  // L2-adjusted gradients live until the launch
    };
    std::map<std::pair<double, int64_t>, Bucket> buckets;
    for (size_t i = 0; i < params.size(); ++i) {
      Tensor<T, CUDA> g = grads[i];
      double decoupled_wd = decays[i];
      if (mode == WeightDecayMode::l2 && decays[i] != 0.0) {
        g = add(g, mul_scalar(params[i].detach(), decays[i]));
        decoupled_wd = 0.0;
      }
      Bucket& bucket = buckets[{decoupled_wd, steps[i]}];
      bucket.tensors.push_back({params[i].data(), g.data(), m[i].data(), v[i].data(),
                                params[i].numel(), decoupled_wd != 0.0});
      bucket.keep_alive.push_back(g);
    }
    for (auto& [key, bucket] : buckets) {
      cuda::AdamWHyper hyper;
      hyper.lr = static_cast<float>(lr);
      hyper.beta1 = static_cast<float>(options.beta1);
      hyper.beta2 = static_cast<float>(options.beta2);
      hyper.eps = static_cast<float>(options.eps);
      hyper.weight_decay = static_cast<float>(key.first);
      hyper.step = key.second;
      cuda::adamw_multi_tensor<T>(bucket.tensors, hyper);
    }
  }
};

}  // namespace detail

// Adam-family optimizer. Use the AdamW / Adam aliases below, which fix the decay mode.
template <class D = CPU>
class AdamOptimizer {
 public:
  struct State {
    Tensor<float, D> m, v;  // first and second moments, float32, the parameter's shape
    int64_t step = 0;       // updates applied to this parameter
  };

  AdamOptimizer(std::vector<ParamGroup<D>> groups, AdamOptions options, WeightDecayMode mode)
      : groups_(std::move(groups)), options_(options), mode_(mode) {
    options_.validate(name());
    std::set<std::string> seen;
    std::set<const Tensor<float, D>*> seen_tensors;
    for (const auto& group : groups_) {
      MENTOR_CHECK(group.weight_decay >= 0 && std::isfinite(group.weight_decay), name(),
                   ": weight decay must be finite and >= 0, got ", group.weight_decay);
      for (const auto& [param_name, tensor] : group.params) {
        MENTOR_CHECK(tensor != nullptr, name(), ": parameter '", param_name, "' is null");
        MENTOR_CHECK(tensor->defined(), name(), ": parameter '", param_name, "' is undefined");
        MENTOR_CHECK(seen.insert(param_name).second, name(), ": parameter '", param_name,
                     "' appears in two groups (or twice in one)");
        MENTOR_CHECK(seen_tensors.insert(tensor).second, name(), ": parameter '", param_name,
                     "' is the same tensor as another parameter");
        MENTOR_CHECK(tensor->is_contiguous(), name(), ": parameter '", param_name,
                     "' is not contiguous");
      }
    }
  }

  const char* name() const { return mode_ == WeightDecayMode::decoupled ? "AdamW" : "Adam"; }
  const AdamOptions& options() const { return options_; }
  WeightDecayMode mode() const { return mode_; }
  const std::vector<ParamGroup<D>>& groups() const { return groups_; }

  // Applies one update with learning rate `lr` to every parameter that has a gradient.
  void step(double lr) {
    MENTOR_CHECK(std::isfinite(lr) && lr >= 0, name(), "::step: learning rate must be finite and ",
                 ">= 0, got ", lr);
    NoGradGuard no_grad;
    // Every gradient's shape is checked before any parameter or step count changes.
    std::vector<Tensor<float, D>> params, grads, m, v;
    std::vector<State*> states;
    detail::AdamStep update{options_, mode_, lr, {}, {}};
    for (const auto& group : groups_) {
      for (const auto& [param_name, tensor] : group.params) {
        Tensor<float, D> grad = tensor->grad();
        if (!grad.defined()) continue;
        State& state = state_for(param_name, *tensor, grad);
        params.push_back(*tensor);
        grads.push_back(grad.contiguous_nograd());
        m.push_back(state.m);
        v.push_back(state.v);
        states.push_back(&state);
        update.decays.push_back(group.weight_decay);
      }
    }
    for (State* state : states) update.steps.push_back(++state->step);
    launch(update, params, grads, m, v);
  }

  // Drops every parameter's gradient (frees its memory).
  void zero_grad() {
    for (const auto& group : groups_)
      for (const auto& [param_name, tensor] : group.params) tensor->zero_grad();
  }

  // Moments and step counts by parameter name (only parameters that have had a gradient).
  const std::map<std::string, State>& state() const { return state_; }
  std::map<std::string, State>& mutable_state() { return state_; }

  // The parameter named `name` (null when this optimizer has none).
  Tensor<float, D>* find_param(const std::string& param_name) const {
    for (const auto& group : groups_)
      for (const auto& [n, tensor] : group.params)
        if (n == param_name) return tensor;
    return nullptr;
  }

  // Hyper-parameters and per-parameter step counts (the tensors go to the checkpoint separately).
  nlohmann::json to_json() const {
    nlohmann::json steps = nlohmann::json::object();
    for (const auto& [param_name, s] : state_) steps[param_name] = s.step;
    nlohmann::json groups = nlohmann::json::array();
    for (const auto& group : groups_) {
      nlohmann::json names = nlohmann::json::array();
      for (const auto& [param_name, tensor] : group.params) names.push_back(param_name);
      groups.push_back({{"weight_decay", group.weight_decay}, {"params", names}});
    }
    return {{"type", name()},      {"beta1", options_.beta1}, {"beta2", options_.beta2},
            {"eps", options_.eps}, {"groups", groups},        {"param_steps", steps}};
  }

  // Restores one parameter's state (checkpoint loading). Shapes are checked against the parameter.
  void set_state(const std::string& param_name, Tensor<float, D> m, Tensor<float, D> v,
                 int64_t step) {
    Tensor<float, D>* param = find_param(param_name);
    MENTOR_CHECK(param != nullptr, name(), "::set_state: no parameter named '", param_name, "'");
    MENTOR_CHECK_SHAPE(m.shape() == param->shape() && v.shape() == param->shape(), name(),
                       "::set_state: '", param_name, "' has shape ", param->shape().str(),
                       " but the moments have shapes ", m.shape().str(), " and ", v.shape().str());
    MENTOR_CHECK(step >= 1, name(), "::set_state: '", param_name, "' step count must be >= 1, got ",
                 step);
    state_[param_name] = State{m.contiguous_nograd(), v.contiguous_nograd(), step};
  }
  void clear_state() { state_.clear(); }

 private:
  State& state_for(const std::string& param_name, const Tensor<float, D>& param,
                   const Tensor<float, D>& grad) {
    MENTOR_CHECK_SHAPE(grad.shape() == param.shape(), name(), ": gradient of '", param_name,
                       "' has shape ", grad.shape().str(), ", the parameter ", param.shape().str());
    auto found = state_.find(param_name);
    if (found == state_.end()) {
      found = state_
                  .emplace(param_name, State{Tensor<float, D>::zeros(param.shape()),
                                             Tensor<float, D>::zeros(param.shape()), 0})
                  .first;
    }
    return found->second;
  }

  std::vector<ParamGroup<D>> groups_;
  AdamOptions options_;
  WeightDecayMode mode_;
  std::map<std::string, State> state_;
};

// torch.optim.AdamW: decoupled weight decay (MENTOR/LlamaGen: betas 0.9/0.95, wd 0.05 on >= 2-D).
template <class D = CPU>
class AdamW : public AdamOptimizer<D> {
 public:
  AdamW(std::vector<ParamGroup<D>> groups, AdamOptions options = {0.9, 0.999, 1e-8})
      : AdamOptimizer<D>(std::move(groups), options, WeightDecayMode::decoupled) {}
};

// torch.optim.Adam: weight decay (if any group has it) as an L2 term added to the gradient.
template <class D = CPU>
class Adam : public AdamOptimizer<D> {
 public:
  Adam(std::vector<ParamGroup<D>> groups, AdamOptions options = {0.9, 0.999, 1e-8})
      : AdamOptimizer<D>(std::move(groups), options, WeightDecayMode::l2) {}
};

}  // namespace mentor::train
