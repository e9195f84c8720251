#!/usr/bin/env bash
# Configures and builds mentor in ./build (Release, warnings as errors, CUDA when nvcc is present).
# Extra arguments go to CMake's configure step.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${MENTOR_JOBS:-$(nproc)}
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DMENTOR_WERROR=ON "$@" >/dev/null
cmake --build build -j "$jobs"
