#!/usr/bin/env bash
# Set up, build, and run the main job: train a small model on real data and watch its loss fall.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
bash tools/build.sh "$@"
./build/examples/train_fashion
