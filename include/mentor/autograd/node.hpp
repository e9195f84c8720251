#pragma once
// The pieces of reverse-mode autograd that tensors hold: the grad mode switch, the graph Node, and
// the per-tensor Slot that owns a tensor's gradient and the node that produced it.
//
// Ownership (no cycles): a tensor owns its Slot; a Slot owns the Node that produced it; a Node owns
// the Slots of its inputs (to accumulate into them) and only a weak reference to its output's Slot.
// So the graph lives exactly as long as the tensors computed from it.
#include <memory>
#include <string_view>
#include <vector>

namespace mentor {
template <class T, class D>
class Tensor;
}

namespace mentor::autograd {

namespace detail {
inline bool& grad_mode_flag() {
  thread_local bool enabled = true;
  return enabled;
}
}  // namespace detail

// Whether ops record the graph on this thread.
inline bool grad_enabled() { return detail::grad_mode_flag(); }

// RAII scope in which no graph is recorded (inference, optimizer updates).
class NoGradGuard {
 public:
  NoGradGuard() : previous_(detail::grad_mode_flag()) { detail::grad_mode_flag() = false; }
  ~NoGradGuard() { detail::grad_mode_flag() = previous_; }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// A recorded op: knows the nodes that produced its inputs (for ordering) and how to push its
// output's gradient into its inputs' slots.
class Node {
 public:
  virtual ~Node() = default;
  virtual void propagate() = 0;
  virtual std::string_view name() const = 0;
  const std::vector<std::shared_ptr<Node>>& inputs() const { return input_nodes_; }

 protected:
  std::vector<std::shared_ptr<Node>> input_nodes_;
};

template <class T, class D>
struct Slot {
  Tensor<T, D> grad;               // leaves: owned, accumulated with +=; interior: transient
  std::shared_ptr<Node> grad_fn;   // null for leaves
  bool requires_grad = false;      // set on leaves by requires_grad_(); interior slots: true
  bool retain_grad = false;        // keep an interior gradient after its node ran

  bool is_leaf() const { return grad_fn == nullptr; }
};

}  // namespace mentor::autograd

namespace mentor {
using autograd::NoGradGuard;
}
