// Must not compile: an op on Tensor<double, CUDA>. CUDA kernels exist for float and bf16 only; the
// op skeleton's static_assert says so when the op is compiled (not at link time or run time).
// With MENTOR_COMPILE_FAIL_CONTROL the same op runs on Tensor<float, CUDA> and compiles.
#include "mentor/ops/unary.hpp"

int main() {
#if defined(MENTOR_COMPILE_FAIL_CONTROL)
  using Element = float;
#else
  using Element = double;
#endif
  // Never run (the test only compiles it): building the tensor needs no GPU at compile time.
  mentor::Tensor<Element, mentor::CUDA> x;
  if (x.defined()) return mentor::exp(x).numel() == 0 ? 0 : 1;
  return 0;
}
