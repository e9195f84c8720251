#pragma once
// How an op reaches its CUDA kernel. Each op header declares its CUDA launchers (raw pointers,
// plain C++) under MENTOR_WITH_CUDA and calls them through MENTOR_CUDA_CALL; the launchers are
// defined in src/cuda/*.cu. In a CPU-only build the call is not even compiled: using a CUDA tensor
// there throws a clear error instead.
#include "mentor/core/device_ops.hpp"

#if defined(MENTOR_WITH_CUDA)
#define MENTOR_CUDA_CALL(...) __VA_ARGS__
#else
#define MENTOR_CUDA_CALL(...) ::mentor::detail::DeviceOps<::mentor::CUDA>::unavailable()
#endif
