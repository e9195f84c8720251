#pragma once
// CUDA tests run where a GPU is present and skip, with a warning, everywhere else (CI has none).
#include "catch.hpp"
#include "mentor/core/cuda_api.hpp"

#define MENTOR_REQUIRE_GPU()                                            \
  do {                                                                  \
    if (!::mentor::cuda::device_available()) {                          \
      WARN("no CUDA device (or driver) on this machine: test skipped"); \
      return;                                                           \
    }                                                                   \
  } while (0)
