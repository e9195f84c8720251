// Must not compile: adding a float tensor to a bf16 tensor without an explicit conversion.
// With MENTOR_COMPILE_FAIL_CONTROL the same program converts first and compiles (so the failure
// above is for the intended reason, not a typo).
#include "mentor/ops/elementwise.hpp"

int main() {
  auto a = mentor::Tensor<float>::ones({2, 3});
  auto b = mentor::Tensor<mentor::bf16>::ones({2, 3});
#if defined(MENTOR_COMPILE_FAIL_CONTROL)
  auto c = a + b.to<float>();
#else
  auto c = a + b;
#endif
  return c.numel() == 6 ? 0 : 1;
}
