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

template <class D>
inline constexpr bool is_device_v = std::is_same_v<D, CPU> || std::is_same_v<D, CUDA>;

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
