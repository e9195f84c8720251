#!/usr/bin/env bash
# mentor's CPU training steps (bench/bench_train_cpu) beside the same models in PyTorch, on this
# machine in one command, at 1 and 2 threads; prints one table with step times, the speed-ups and
# peak resident memory. Each workload runs in a process of its own, so that its peak memory is its
# own. The PyTorch side: ../shared/bench/torch_cpu_ref.py's train step (the tiny decoder) and
# tools/reference/torch_mentor_step.py (MENTOR stage 2 at the shipped configuration).
# Needs a built tree (tools/build.sh) and a python with torch and transformers (PyPI, in a virtual
# environment): PYTHON=/path/to/venv/bin/python.
#   tools/bench-train-cpu.sh [build-dir]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
python=${PYTHON:-python3}
decoder_ref=$here/../shared/bench/torch_cpu_ref.py
mentor_ref=$here/tools/reference/torch_mentor_step.py
bench=$build/bench/bench_train_cpu
[[ -x $bench ]] || { echo "bench-train-cpu: $bench is not built (run tools/build.sh)" >&2; exit 1; }
[[ -f $decoder_ref ]] || { echo "bench-train-cpu: $decoder_ref is missing" >&2; exit 1; }
"$python" -c "import torch, transformers" 2>/dev/null ||
  { echo "bench-train-cpu: $python lacks torch or transformers (set PYTHON)" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
measure() {  # name threads: one process per workload
  local name=$1 threads=$2
  "$bench" --benchmark_filter="^$name/threads:$threads/" --benchmark_format=json \
    --benchmark_repetitions=3 --benchmark_report_aggregates_only=true > "$out/mentor_${name}_$threads.json"
}
with_peak_rss() {  # out-file command...: the command's stdout, then its peak RSS (MB) as JSON
  local file=$1; shift
  "$python" - "$@" > "$file" <<'PY'
import json, resource, subprocess, sys
result = subprocess.run(sys.argv[1:], check=True, capture_output=True, text=True)
line = [l for l in result.stdout.splitlines() if '"cpu_train_step"' in l or '"cpu_mentor_stage2_step"' in l][0]
record = json.loads(line)
record["peak_rss_MB"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps(record))
PY
}
for threads in 1 2; do
  # torch_cpu_ref.py decodes after its train step; the decode adds little to the peak
  with_peak_rss "$out/torch_decoder_$threads.json" "$python" "$decoder_ref" --threads "$threads" --steps 10
  with_peak_rss "$out/torch_stage2_$threads.json" "$python" "$mentor_ref" --threads "$threads" --steps 10
  measure decoder_step "$threads"
  measure mentor_stage2 "$threads"
done
"$python" - "$out" <<'PY'
import json, sys, os
out = sys.argv[1]
def load(name):
    return json.load(open(os.path.join(out, name)))
def mentor(name, t):
    runs = load(f"mentor_{name}_{t}.json")
    med = [r for r in runs["benchmarks"] if r.get("aggregate_name") == "median"][0]
    return runs["context"], med["real_time"], med["peak_rss_MB"]
ctx, _, _ = mentor("decoder_step", 1)
torch_version = load("torch_decoder_1.json")["torch"]
print(f"CPU: {ctx.get('host_name', '?')}, {ctx['num_cpus']} cpus; torch {torch_version}")
print("| workload | threads | PyTorch | mentor | speed-up | peak RSS PyTorch | peak RSS mentor |")
print("|---|---|---|---|---|---|---|")
for label, name, ref in (("tiny decoder train step (torch_cpu_ref.py)", "decoder_step", "torch_decoder"),
                         ("MENTOR stage-2 step, shipped config", "mentor_stage2", "torch_stage2")):
    for t in (1, 2):
        r = load(f"{ref}_{t}.json")
        _, ms, rss = mentor(name, t)
        print(f"| {label} | {t} | {r['ms']:.1f} ms | {ms:.1f} ms | {r['ms'] / ms:.2f}x "
              f"| {r['peak_rss_MB']:.0f} MB | {rss:.0f} MB |")
PY
