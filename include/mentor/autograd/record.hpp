#pragma once
// Recording ops and running the backward pass.
//
// An op computes its output, then calls
//     autograd::record("silu", out, backward, x, ...);
// where `backward(grad_out)` (or `backward(grad_out, needs)`, needs[i] telling whether input i
// wants a gradient) returns a std::tuple with one entry per input: a tensor of exactly that input's
// type, or autograd::NoGrad for inputs that carry none (indices, masks). The tuple is checked when
// the op is compiled, so an op cannot be recorded without a complete backward.
//
// Gradient rule: leaf tensors (parameters) own their gradient and accumulate into it with += across
// backward calls until zero_grad(); interior gradients are transient and freed once their node has
// run (unless retain_grad()). The backward pass itself records nothing (no double backward).
#include <array>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_set>
#include <utility>

#include "mentor/autograd/node.hpp"
#include "mentor/core/dtype.hpp"
#include "mentor/core/shape.hpp"

namespace mentor::autograd {

// The backward's entry for an input that takes no gradient.
struct NoGrad {};

template <class T, class D>
std::shared_ptr<Slot<T, D>> slot_of(const Tensor<T, D>& tensor) {
  return tensor.slot_;
}

template <class X>
struct is_tensor : std::false_type {};
template <class T, class D>
struct is_tensor<Tensor<T, D>> : std::true_type {};

template <class... Inputs>
bool any_requires_grad(const Inputs&... inputs) {
  return grad_enabled() && (inputs.requires_grad() || ...);
}

namespace detail {

// Adds g into a slot's gradient without ever mutating a tensor someone else can see.
template <class T, class D>
void accumulate(Slot<T, D>& slot, const Tensor<T, D>& g, std::string_view op,
                const Shape& expected) {
  MENTOR_CHECK_SHAPE(g.shape() == expected, "autograd: backward of '", op,
                     "' produced a gradient of shape ", g.shape().str(), " for an input of shape ",
                     expected.str());
  auto owns_exactly = [](const Tensor<T, D>& t) {
    return t.storage().use_count() == 1 && t.is_contiguous() && t.offset() == 0 &&
           t.storage()->bytes == t.nbytes();
  };
  if (!slot.grad.defined()) {
    // An interior gradient is only read by its node's backward, and the branches below never add
    // into a shared one in place, so it may alias g (a residual add hands the same g to both of
    // its inputs). Leaf and retained gradients are the user's to mutate (clipping, unscaling):
    // those own their bytes.
    const bool may_alias = (!slot.is_leaf() && !slot.retain_grad) || owns_exactly(g);
    if (!g.is_contiguous())
      slot.grad = g.detach().contiguous_nograd();  // a fresh copy of its own
    else
      slot.grad = may_alias ? g.detach() : g.detach().clone();
  } else if (owns_exactly(slot.grad)) {
    slot.grad.add_(g);
  } else {
    Tensor<T, D> sum = slot.grad.clone();
    sum.add_(g);
    slot.grad = sum;
  }
}

// An op's optional input (a missing bias) is an undefined tensor, which has no shape.
template <class X>
Shape shape_or_empty(const X& tensor) {
  return tensor.defined() ? tensor.shape() : Shape{};
}

template <class OutT, class D, class Backward, class... Inputs>
class OpNode final : public Node {
 public:
  static constexpr size_t kInputs = sizeof...(Inputs);

  OpNode(std::string_view name, Backward backward, const Inputs&... inputs)
      : name_(name),
        backward_(std::move(backward)),
        input_slots_(slot_of(inputs)...),
        input_shapes_{shape_or_empty(inputs)...} {
    size_t i = 0;
    ((needs_[i++] = inputs.requires_grad()), ...);
    std::apply(
        [&](const auto&... slots) {
          ((slots && slots->grad_fn ? input_nodes_.push_back(slots->grad_fn) : void()), ...);
        },
        input_slots_);
  }

  void set_output(const std::shared_ptr<Slot<OutT, D>>& out) { output_ = out; }
  std::string_view name() const override { return name_; }

  void propagate() override {
    auto out = output_.lock();
    if (!out || !out->grad.defined()) return;
    Tensor<OutT, D> grad_out = out->grad;
    if (!out->retain_grad) out->grad = Tensor<OutT, D>();
    auto grads = call_backward(grad_out);
    push(grads, std::index_sequence_for<Inputs...>{});
  }

 private:
  auto call_backward(const Tensor<OutT, D>& grad_out) {
    if constexpr (std::is_invocable_v<Backward&, const Tensor<OutT, D>&,
                                      const std::array<bool, kInputs>&>) {
      return backward_(grad_out, needs_);
    } else {
      return backward_(grad_out);
    }
  }
  template <class Grads, size_t... I>
  void push(Grads& grads, std::index_sequence<I...>) {
    (push_one<I>(std::get<I>(grads)), ...);
  }
  template <size_t I, class G>
  void push_one(G& g) {
    if constexpr (!std::is_same_v<G, NoGrad>) {
      auto& slot = std::get<I>(input_slots_);
      if (slot && needs_[I] && g.defined()) accumulate(*slot, g, name_, input_shapes_[I]);
    }
  }

  std::string_view name_;
  Backward backward_;
  std::tuple<std::shared_ptr<Slot<typename Inputs::value_type, typename Inputs::device_type>>...>
      input_slots_;
  std::array<Shape, kInputs> input_shapes_;
  std::array<bool, kInputs> needs_{};
  std::weak_ptr<Slot<OutT, D>> output_;
};

template <class B, class G, size_t N,
          bool kWithNeeds = std::is_invocable_v<B&, const G&, const std::array<bool, N>&>>
struct backward_result {
  using type = std::invoke_result_t<B&, const G&, const std::array<bool, N>&>;
};
template <class B, class G, size_t N>
struct backward_result<B, G, N, false> {
  using type = std::invoke_result_t<B&, const G&>;
};

template <class Result, class... Inputs, size_t... I>
constexpr bool backward_result_matches(std::index_sequence<I...>) {
  return ((std::is_same_v<std::tuple_element_t<I, Result>, Inputs> ||
           (std::is_same_v<std::tuple_element_t<I, Result>, NoGrad> &&
            !is_floating_v<typename Inputs::value_type>)) &&
          ...);
}

}  // namespace detail

template <class OutT, class D, class Backward, class... Inputs>
void record_floating(std::string_view name, Tensor<OutT, D>& out, Backward backward,
                     const Inputs&... inputs) {
  constexpr size_t n = sizeof...(Inputs);
  using Result = typename detail::backward_result<Backward, Tensor<OutT, D>, n>::type;
  static_assert(std::tuple_size_v<Result> == n,
                "record: the backward must return one gradient (or NoGrad) per input");
  static_assert(
      detail::backward_result_matches<Result, Inputs...>(std::index_sequence_for<Inputs...>{}),
      "record: each gradient must have its input's exact tensor type; NoGrad is allowed "
      "only for non-floating inputs");
  if (!any_requires_grad(inputs...)) return;
  auto node = std::make_shared<detail::OpNode<OutT, D, Backward, Inputs...>>(
      name, std::move(backward), inputs...);
  auto slot = std::make_shared<Slot<OutT, D>>();
  slot->grad_fn = node;
  slot->requires_grad = true;
  node->set_output(slot);
  out = out.detach();
  out.set_slot_(slot);
}

// Attaches `backward` to `out` as the op `name` applied to `inputs` (see the file comment).
template <class OutT, class D, class Backward, class... Inputs>
void record(std::string_view name, Tensor<OutT, D>& out, Backward backward,
            const Inputs&... inputs) {
  static_assert((is_tensor<Inputs>::value && ...), "record: inputs must be tensors");
  if constexpr (!is_floating_v<OutT>) {
    return;  // integer and boolean results carry no gradient (views of index tensors, ...)
  } else {
    record_floating(name, out, std::move(backward), inputs...);
  }
}

// Runs every node reachable from `root` once, each after all the nodes that consume its output.
inline void run_backward(const std::shared_ptr<Node>& root) {
  NoGradGuard no_grad;
  std::vector<Node*> order;
  std::unordered_set<Node*> visited;
  std::vector<std::pair<Node*, size_t>> stack{{root.get(), 0}};
  visited.insert(root.get());
  while (!stack.empty()) {  // iterative post-order DFS: deep graphs must not overflow the stack
    auto& [node, next] = stack.back();
    if (next < node->inputs().size()) {
      Node* child = node->inputs()[next++].get();
      if (visited.insert(child).second) stack.push_back({child, 0});
    } else {
      order.push_back(node);
      stack.pop_back();
    }
  }
  for (auto it = order.rbegin(); it != order.rend(); ++it) (*it)->propagate();
}

}  // namespace mentor::autograd

// Tensor's own definitions come after record() (they record ops): included here, not at the top,
// so this header also works when it is included before core/tensor.hpp.
#include "mentor/core/tensor.hpp"
