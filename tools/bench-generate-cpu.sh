#!/usr/bin/env bash
# mentor's guided CPU decode (bench/bench_generate_cpu) beside PyTorch's (../shared/bench/
# torch_cpu_ref.py) on this machine, one after the other, at 1 and 2 threads; prints a table of
# latencies and ratios. Needs a built tree (tools/build.sh) and python3 with torch (Debian's
# python3-torch or a virtual environment: PYTHON=/path/to/python).
#   tools/bench-generate-cpu.sh [build-dir]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
python=${PYTHON:-python3}
ref=$here/../shared/bench/torch_cpu_ref.py
bench=$build/bench/bench_generate_cpu
[[ -x $bench ]] || { echo "bench-generate-cpu: $bench is not built (run tools/build.sh)" >&2; exit 1; }
[[ -f $ref ]] || { echo "bench-generate-cpu: $ref is missing" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for threads in 1 2; do
  # the decode is what is compared; the train step runs only for a short while
  "$python" "$ref" --threads "$threads" --steps 2 | grep cpu_generate_cfg > "$out/torch_$threads.json"
done
"$bench" --benchmark_format=json --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
  > "$out/mentor.json"
"$python" - "$out" <<'PY'
import json, sys, os
out = sys.argv[1]
torch = {t: json.load(open(os.path.join(out, f"torch_{t}.json"))) for t in (1, 2)}
runs = json.load(open(os.path.join(out, "mentor.json")))
median = {r["run_name"]: r for r in runs["benchmarks"] if r.get("aggregate_name") == "median"}
print(f"CPU: {runs['context'].get('host_name', '?')}, {runs['context']['num_cpus']} cpus; torch {torch[1]['torch']}")
print("| workload | threads | PyTorch | mentor decoder | speed-up | mentor op path |")
print("|---|---|---|---|---|---|")
for t in (1, 2):
    ref_s = torch[t]["s"]
    dec = median[f"decoder/threads:{t}/batch:1/real_time"]["real_time"] / 1e3
    op = median.get(f"op_path/threads:{t}/batch:1/real_time")
    op_s = f"{op['real_time'] / 1e3:.3f} s" if op else "-"
    print(f"| 1 image, 64 tokens, guidance (2 sequences) | {t} | {ref_s:.3f} s | {dec:.3f} s | {ref_s / dec:.1f}x | {op_s} |")
for t in (1, 2):
    r = median[f"decoder/threads:{t}/batch:8/real_time"]
    print(f"| batch 8, guidance (16 sequences) | {t} | - | {r['real_time'] / 1e3:.3f} s ({r['images/s']:.1f} images/s) | - | - |")
PY
