#pragma once
// Devices are tag types: a tensor's device is part of its type, so mixing devices without an
// explicit `to<Device>()` does not compile.
#include <string_view>
#include <type_traits>

namespace mentor {

struct CPU {
  static constexpr std::string_view name = "cpu";
};
struct CUDA {
  static constexpr std::string_view name = "cuda";
};
// The shape-only device: its tensors have shapes, strides and autograd slots but no memory
// (nothing is allocated, writes are dropped, reading values is an error). A model built on it
// lists its parameters' names and shapes for any size (nn::parameter_shapes_of).
struct ShapeOnly {
  static constexpr std::string_view name = "shape-only";
};

template <class D>
inline constexpr bool is_device_v =
    std::is_same_v<D, CPU> || std::is_same_v<D, CUDA> || std::is_same_v<D, ShapeOnly>;

template <class D>
concept Device = is_device_v<D>;

// True when this build has the CUDA backend (the mentor_cuda library is linked).
inline constexpr bool cuda_built =
#if defined(MENTOR_WITH_CUDA)
    true;
#else
    false;
#endif

}  // namespace mentor
