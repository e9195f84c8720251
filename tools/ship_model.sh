#!/usr/bin/env bash
# Turns a finished examples/train run into the shipped model and its record under docs/model:
#   mentor.safetensors, mentor.json, vq.safetensors (bf16), spiece.model, config.json  (train --export)
#   metrics/<stage>.jsonl, training.log                  the run's logs
#   loss_<stage>.png                                     curves (tools/plot_metrics.py, gnuplot)
#   samples_<stage>.png                                  each stage's last sample grid
#   synthbench.md/.json, synthbench_grid.png             the shipped weights on the full benchmark
# Usage: tools/ship_model.sh RUN_DIR [CONFIG]   (CONFIG: the run's config, default configs/tiny.json)
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:?usage: tools/ship_model.sh RUN_DIR [CONFIG]}
config=${2:-configs/tiny.json}
to=docs/model
mkdir -p "$to/metrics"
./build/examples/train --config "$config" --out "$run" --export "$to"
for stage in vq clip decoder stage1 stage2; do
  [ -f "$run/$stage/metrics.jsonl" ] || continue
  cp "$run/$stage/metrics.jsonl" "$to/metrics/$stage.jsonl"
  [ -f "$run/$stage/samples/latest.png" ] && cp "$run/$stage/samples/latest.png" "$to/samples_$stage.png"
done
[ -f "$run/stage2/samples/prompts.txt" ] && cp "$run/stage2/samples/prompts.txt" "$to/samples_stage2.txt"
[ -f "$run.log" ] && grep -v '^sentencepiece\|trainer_interface\|bpe_model' "$run.log" > "$to/training.log" || true
python3 tools/plot_metrics.py "$to/metrics/vq.jsonl" -m rec_loss,psnr_world,psnr_real,codebook_perplexity \
  --smooth 0.8 --title "VQ tokenizer" -o "$to/loss_vq.png"
python3 tools/plot_metrics.py "$to/metrics/clip.jsonl" -m loss,accuracy,heldout_accuracy \
  --smooth 0.8 --title "CLIP + T5, contrastive" -o "$to/loss_clip.png"
for stage in decoder stage1 stage2; do
  [ -f "$to/metrics/$stage.jsonl" ] || continue
  python3 tools/plot_metrics.py "$to/metrics/$stage.jsonl" -m loss,lr --smooth 0.8 \
    --title "$stage" -o "$to/loss_$stage.png"
done
# The full held-out SynthBench on the shipped (bf16) weights, through examples/generate.
bench=$(mktemp -d)
trap 'rm -rf "$bench"' EXIT
./build/examples/evaluate --write-benchmark "$bench/benchmark"
./build/examples/generate --requests "$bench/benchmark/requests.jsonl" --out "$bench/generated"
./build/examples/evaluate --images "$bench/generated" --out "$to/synthbench.json" \
  --markdown "$to/synthbench.md"
cp "$bench/generated/grid.png" "$to/synthbench_grid.png"
du -ch "$to"/*.safetensors "$to"/spiece.model | tail -1
cat "$to/synthbench.md"
