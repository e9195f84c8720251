#!/usr/bin/env bash
# Set up, build, and run every test (CUDA tests skip with a message when no GPU is present).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
bash tools/build.sh "$@"
ctest --test-dir build --output-on-failure -j "${MENTOR_JOBS:-$(nproc)}"
