#!/usr/bin/env bash
# Set up, build, and run the main job: the shipped MENTOR model (docs/model, trained by
# examples/train with configs/tiny.json; docs/training.md) generates pictures from prompts and
# rendered reference images: one SynthBench item per category (a held-out subject, its reference
# picture and a prompt that places it), scored against the renderer's truth.
# Extra arguments go to CMake's configure step. Output: out/main/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
jobs=${MENTOR_JOBS:-$(nproc)}
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DMENTOR_WERROR=ON "$@" >/dev/null
cmake --build build -j "$jobs" --target generate evaluate
out=out/main
rm -rf "$out"
./build/examples/evaluate --write-benchmark "$out/benchmark" --per-category 2
./build/examples/generate --requests "$out/benchmark/requests.jsonl" --out "$out/generated"
./build/examples/evaluate --images "$out/generated" --per-category 2 \
  --out "$out/synthbench.json" --markdown "$out/synthbench.md"
echo "main: the pictures are in $out/generated/ (grid.png: all of them; references and prompts in"
echo "      $out/benchmark/; the scores in $out/synthbench.md)"
