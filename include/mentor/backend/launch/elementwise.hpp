#pragma once
// The CUDA launchers of ops/elementwise.hpp: plain C++ declarations (no CUDA header, no tensor, no
// autograd), defined for float and bf16 in src/cuda/elementwise.cu. The types its CPU and CUDA
// kernels share live here too.
#include <cstdint>

#include "mentor/core/shape.hpp"

namespace mentor {

enum class BinaryOp { Add, Sub, Mul, Div };

namespace cuda {
template <BinaryOp Op, class T>
void binary(const T* a, const Strides& sa, const T* b, const Strides& sb, T* out,
            const Shape& shape);
template <BinaryOp Op, class T>
void binary_scalar(const T* a, float scalar, T* out, int64_t n);  // out = a op scalar
}  // namespace cuda

}  // namespace mentor
