#pragma once
// Module<T, D>: the base of every layer and model. A module names its parameters and buffers the
// way upstream's PyTorch state_dict does ("layers.0.attention.wqkv.weight"), so checkpoints load by
// name. Parameters are trainable leaves; buffers are saved state that is not trained
// (e.g. the caption model's `uncond_embedding`).
//
// A subclass implements `visit(Visitor&)` listing its own tensors and children:
//     void visit(nn::Visitor<T, D>& v) override {
//       v.parameter("weight", weight);
//       v.child("attention", attention);
//       v.generator("dropout_generator", dropout_generator);  // if it draws on its own
//     }
#include <functional>
#include <map>
#include <memory>
#include <regex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "mentor/core/random.hpp"
#include "mentor/core/tensor.hpp"

namespace mentor::nn {

template <class T, class D>
class Module;

// Walks a module tree, calling the callbacks with fully qualified names.
template <class T, class D>
class Visitor {
 public:
  using TensorFn = std::function<void(const std::string& name, Tensor<T, D>& tensor)>;
  using ModuleFn = std::function<void(const std::string& name, Module<T, D>& module)>;
  using GeneratorFn = std::function<void(const std::string& name, Generator& generator)>;
  Visitor(TensorFn on_parameter, TensorFn on_buffer, ModuleFn on_module = nullptr,
          GeneratorFn on_generator = nullptr)
      : on_parameter_(std::move(on_parameter)),
        on_buffer_(std::move(on_buffer)),
        on_module_(std::move(on_module)),
        on_generator_(std::move(on_generator)) {}

  void parameter(const std::string& name, Tensor<T, D>& tensor) {
    if (on_parameter_) on_parameter_(prefix_ + name, tensor);
  }
  void buffer(const std::string& name, Tensor<T, D>& tensor) {
    if (on_buffer_) on_buffer_(prefix_ + name, tensor);
  }
  // A random generator the module draws from on its own (e.g. dropout): checkpoints save and
  // restore its state under the qualified name, so a resumed run draws the same numbers.
  void generator(const std::string& name, Generator& generator) {
    if (on_generator_) on_generator_(prefix_ + name, generator);
  }
  void child(const std::string& name, Module<T, D>& module) {
    std::string saved = prefix_;
    prefix_ += name + ".";
    if (on_module_) on_module_(prefix_, module);
    module.visit(*this);
    prefix_ = saved;
  }
  // A child whose tensors sit at this level, without a name of its own (e.g. MENTOR keeps the GPT's
  // keys at the top of its checkpoint); it still receives mode changes.
  void inline_child(Module<T, D>& module) {
    if (on_module_) on_module_(prefix_, module);
    module.visit(*this);
  }
  template <class M>
  void children(const std::string& name, std::vector<M>& modules) {
    for (size_t i = 0; i < modules.size(); ++i) child(name + "." + std::to_string(i), modules[i]);
  }

 private:
  TensorFn on_parameter_, on_buffer_;
  ModuleFn on_module_;
  GeneratorFn on_generator_;
  std::string prefix_;
};

template <class T, class D>
class Module {
 public:
  using value_type = T;
  using device_type = D;

  Module() = default;
  Module(const Module&) = default;
  Module(Module&&) noexcept = default;
  Module& operator=(const Module&) = default;
  Module& operator=(Module&&) noexcept = default;
  virtual ~Module() = default;

  virtual void visit(Visitor<T, D>& visitor) = 0;

  // Parameters by qualified name (pointers stay valid while the module is alive and not moved).
  std::vector<std::pair<std::string, Tensor<T, D>*>> named_parameters() {
    std::vector<std::pair<std::string, Tensor<T, D>*>> out;
    Visitor<T, D> v([&](const std::string& n, Tensor<T, D>& t) { out.emplace_back(n, &t); },
                    nullptr);
    visit(v);
    return out;
  }
  std::vector<std::pair<std::string, Tensor<T, D>*>> named_buffers() {
    std::vector<std::pair<std::string, Tensor<T, D>*>> out;
    Visitor<T, D> v(nullptr,
                    [&](const std::string& n, Tensor<T, D>& t) { out.emplace_back(n, &t); });
    visit(v);
    return out;
  }
  // Parameters and buffers: what a checkpoint holds.
  std::vector<std::pair<std::string, Tensor<T, D>*>> state() {
    std::vector<std::pair<std::string, Tensor<T, D>*>> out;
    auto add = [&](const std::string& n, Tensor<T, D>& t) { out.emplace_back(n, &t); };
    Visitor<T, D> v(add, add);
    visit(v);
    return out;
  }
  // The generators the module tree owns, by qualified name (see Visitor::generator).
  std::vector<std::pair<std::string, Generator*>> named_generators() {
    std::vector<std::pair<std::string, Generator*>> out;
    Visitor<T, D> v(nullptr, nullptr, nullptr,
                    [&](const std::string& n, Generator& g) { out.emplace_back(n, &g); });
    visit(v);
    return out;
  }
  int64_t parameter_count() {
    int64_t n = 0;
    for (auto& [name, t] : named_parameters()) n += t->numel();
    return n;
  }

  // Marks every parameter trainable (requires_grad) or frozen; `pattern` is an ECMAScript regex
  // matched against the whole qualified name ("" = all). Returns how many tensors matched.
  int set_trainable(bool trainable, const std::string& pattern = "") {
    std::regex re(pattern.empty() ? ".*" : pattern);
    int matched = 0;
    for (auto& [name, t] : named_parameters()) {
      if (!std::regex_match(name, re)) continue;
      ++matched;
      *t = t->detach();
      if (trainable) t->requires_grad_(true);
    }
    return matched;
  }
  void zero_grad() {
    for (auto& [name, t] : named_parameters()) t->zero_grad();
  }

  // Sets training mode (dropout active) on this module and every child.
  void train(bool on = true) {
    training_ = on;
    Visitor<T, D> v(nullptr, nullptr,
                    [on](const std::string&, Module<T, D>& m) { m.training_ = on; });
    visit(v);
  }
  void eval() { train(false); }
  bool training() const { return training_; }

 private:
  bool training_ = true;
};

// Every parameter's qualified name and shape, in named_parameters() order.
template <class T, class D>
std::vector<std::pair<std::string, Shape>> parameter_shapes(Module<T, D>& module) {
  std::vector<std::pair<std::string, Shape>> shapes;
  for (auto& [name, tensor] : module.named_parameters()) shapes.emplace_back(name, tensor->shape());
  return shapes;
}

// The parameter names and shapes of `Model` (a module on the shape-only device, e.g.
// models::GPT<float, ShapeOnly>) built from `config`: its constructor checks the config and lays
// out the tree, and nothing is allocated, so a model of billions of parameters costs only its
// names.
template <class Model, class Config>
std::vector<std::pair<std::string, Shape>> parameter_shapes_of(const Config& config) {
  static_assert(std::is_same_v<typename Model::device_type, ShapeOnly>,
                "parameter_shapes_of: build the model on the ShapeOnly device");
  Generator gen;
  Model model(config, gen);
  return parameter_shapes(model);
}

}  // namespace mentor::nn
