// Must not compile: adding a CPU tensor to a CUDA tensor without an explicit transfer.
// With MENTOR_COMPILE_FAIL_CONTROL the same program moves the CUDA tensor to the CPU first and
// compiles (it is only built, never run, so a CPU-only build is fine).
#include "mentor/ops/elementwise.hpp"

int main() {
  auto a = mentor::Tensor<float, mentor::CPU>::ones({2, 3});
  auto b = mentor::Tensor<float, mentor::CUDA>::ones({2, 3});
#if defined(MENTOR_COMPILE_FAIL_CONTROL)
  auto c = a + b.to<mentor::CPU>();
#else
  auto c = a + b;
#endif
  return c.numel() == 6 ? 0 : 1;
}
