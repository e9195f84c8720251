#!/usr/bin/env bash
# The GPU check, sized to the time a GPU is lent (about 15 minutes in all, at most 10 per call):
#   stage 1 (<= 8 min): configure and build only what needs the GPU (mentor_cuda, the CUDA tests,
#     mentor-verify), run the CUDA tests, `mentor-verify --device cuda` on the carried fixtures,
#     and a short compute-sanitizer memcheck of the runtime test;
#   stage 2 (<= 6 min, same warm machine, reuses stage 1's build folder): build and run the CUDA
#     microbenchmarks of the table, the guided-generation benchmark (bench_generate_cuda: GPT-B and
#     GPT-XL, batch 1 and 16) and PyTorch's torch_ref.py beside them (--quick gemm,attn,norm; then
#     gengraph for GPT-B and GPT-XL), then print the table.
# Always built on the device (its cuDNN and g++ differ from the CPU machine's).
#
#   tools/device-check.sh --prepare       on the CPU machine: fills the git-ignored device-carry/
#                                         (fixtures, torch_ref.py, header-only packages)
#   tools/device-check.sh --dry-run       prints every command of both stages with its time budget
#                                         (and the run-tool call that carries device-carry/)
#   tools/device-check.sh --stage 1|2     on the GPU machine (one stage per call)
#
# Options: --build-dir DIR (default build-device), --jobs N (default nproc). Each step runs under
# `timeout` with its own budget; the budgets of a stage add up to the stage's.
# Logs and JSON results go to $OUT/device-check (out/device-check when OUT is unset); the table is
# also written there as table.md. Exit status: 0 when everything that ran passed in its budget.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STAGE=""
BUILD_DIR="$ROOT/build-device"
JOBS="$(nproc 2>/dev/null || echo 16)"
PREPARE=0
DRY_RUN=0
CUDA_COMPILER="${CUDACXX:-/usr/local/cuda/bin/nvcc}"
SANITIZER="/usr/local/cuda/bin/compute-sanitizer"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --prepare) PREPARE=1 ;;
    --dry-run) DRY_RUN=1 ;;
    --stage) STAGE="$2"; shift ;;
    --build-dir) BUILD_DIR="$(realpath -m "$2")"; shift ;;
    --jobs) JOBS="$2"; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "device-check: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

CARRY="$ROOT/device-carry"
if [[ $PREPARE -eq 1 ]]; then
  SHARED="$ROOT/../shared"
  for need in "$SHARED/bench/torch_ref.py" "$SHARED/fixtures/upstream" "$SHARED/fixtures/mentor"; do
    if [[ ! -e "$need" ]]; then
      echo "device-check --prepare: $need not found" >&2
      exit 1
    fi
  done
  rm -rf "$CARRY"
  mkdir -p "$CARRY/include" "$CARRY/fixtures"
  cp "$SHARED/bench/torch_ref.py" "$CARRY/torch_ref.py"
  # ../shared is not on the GPU machine: the fixtures travel inside the working tree.
  cp -r "$SHARED/fixtures/upstream" "$SHARED/fixtures/mentor" "$CARRY/fixtures/"
  # The GPU machine lacks stb, nlohmann-json and CLI11 (shared/device/README.md): bring Debian's
  # header-only packages along (MENTOR_EXTRA_INCLUDE).
  for dir in stb nlohmann CLI; do
    cp -r "/usr/include/$dir" "$CARRY/include/" 2>/dev/null ||
      echo "device-check --prepare: /usr/include/$dir missing (run tools/setup.sh)" >&2
  done
  echo "device-check --prepare: filled $CARRY ($(du -sh "$CARRY" | cut -f1); git-ignored: carry it)"
  exit 0
fi

if [[ $DRY_RUN -eq 0 && "$STAGE" != 1 && "$STAGE" != 2 ]]; then
  echo "device-check: give --stage 1, --stage 2 or --dry-run (see --help)" >&2
  exit 2
fi

LOG_DIR="${OUT:-$ROOT/out}/device-check"
[[ $DRY_RUN -eq 1 ]] || mkdir -p "$LOG_DIR"
STATUS=0
PLANNED=0
declare -a SUMMARY=()
note() { SUMMARY+=("$1"); echo "== $1"; }
fail() { STATUS=1; note "FAIL: $1"; }

# step NAME BUDGET_SECONDS COMMAND...: runs COMMAND under `timeout BUDGET` with its output in
# $LOG_DIR/NAME.log, or with --dry-run prints it. A step past its budget fails (rc 124).
step() {
  local name="$1" budget="$2"
  shift 2
  PLANNED=$((PLANNED + budget))
  if [[ $DRY_RUN -eq 1 ]]; then
    printf '  [%4d s] %s:' "$budget" "$name"
    printf ' %q' "$@"
    printf '\n'
    return 0
  fi
  local start=$SECONDS rc=0
  timeout --kill-after=10 "$budget" "$@" >"$LOG_DIR/$name.log" 2>&1 || rc=$?
  local took=$((SECONDS - start))
  if [[ $rc -eq 0 ]]; then
    note "$name: ok (${took} s of ${budget})"
  elif [[ $rc -eq 124 || $rc -eq 137 ]]; then
    fail "$name: over its ${budget} s budget; see $name.log"
    tail -n 5 "$LOG_DIR/$name.log"
  else
    fail "$name: exit $rc (${took} s); see $name.log"
    grep -E "FAILED|failed|error|ERROR" "$LOG_DIR/$name.log" | head -n 15
  fi
  return $rc
}

CUDA_TESTS=(test_cuda_runtime test_cuda_ops test_cuda_nn test_cuda_fused test_cuda_models
  test_cuda_decoder)
BENCHES=(bench_cuda_gemm bench_cuda_attention bench_cuda_norm)
CONFIGURE=(cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release
  -DCMAKE_CUDA_COMPILER="$CUDA_COMPILER" -DCMAKE_CUDA_ARCHITECTURES=90 -DMENTOR_CUDA=ON
  -DMENTOR_WERROR=OFF -DMENTOR_TEST_PROGRAMS=file -DMENTOR_EXTRA_INCLUDE="$CARRY/include")

stage1() {
  echo "stage 1 (budget 480 s): build what needs the GPU, CUDA tests, mentor-verify, memcheck"
  step configure 30 "${CONFIGURE[@]}" || return
  step build 200 cmake --build "$BUILD_DIR" -j "$JOBS" --target mentor_cuda "${CUDA_TESTS[@]}" \
    mentor-verify || return
  # Budgets sum to the stage's 480 s. --warn NoAssertions: a test that was skipped (no device)
  # has no assertion and fails here.
  local -A budget=([test_cuda_runtime]=30 [test_cuda_ops]=35 [test_cuda_nn]=30 [test_cuda_fused]=30
    [test_cuda_models]=35 [test_cuda_decoder]=20)
  for t in "${CUDA_TESTS[@]}"; do
    step "$t" "${budget[$t]}" "$BUILD_DIR/tests/$t" --warn NoAssertions
  done
  step verify_cuda_float32 30 "$BUILD_DIR/examples/mentor-verify" --device cuda \
    "$CARRY/fixtures/upstream" "$CARRY/fixtures/mentor"
  # Short: the runtime test's allocator, graph, embedding-capture and reduction cases,
  # synchronised after every launch so a fault names its kernel. Its out-of-memory case asks the
  # driver for 4 TiB on purpose (an API error): not selected, and API errors are not reported.
  step memcheck_runtime 40 env MENTOR_CUDA_SYNC_DEBUG=1 "$SANITIZER" --tool memcheck \
    --error-exitcode 99 --leak-check no --report-api-errors no \
    "$BUILD_DIR/tests/test_cuda_runtime" \
    "cuda: the caching allocator*,cuda: a captured graph*,cuda: empty_cache*,cuda: an embedding*,cuda: broadcast reductions*"
}

stage2() {
  echo "stage 2 (budget 360 s): the CUDA microbenchmarks, generation and torch_ref.py in the same run"
  # bench_generate_cuda reuses stage 1's compiled op instances (mentor-verify built them).
  step build_bench 80 cmake --build "$BUILD_DIR" -j "$JOBS" --target "${BENCHES[@]}" \
    bench_generate_cuda
  # The microbenchmarks run fixed iteration counts (seconds each, most of it CUDA start-up).
  local filter="--benchmark_filter=^(gemm|copy|attn_fwd|attn_fwd_bwd|rmsnorm|xent)/"
  for b in "${BENCHES[@]}"; do
    step "$b" 25 "$BUILD_DIR/bench/$b" "$filter" --benchmark_out="$LOG_DIR/$b.json" \
      --benchmark_out_format=json
  done
  # Guided generation, 256 tokens, cfg 4, top-k 1000, bf16: mentor's graph-captured decoder, then
  # PyTorch's CUDA-graph decode (torch_ref.py gengraph: GPT-B and GPT-XL without --quick). The
  # eager `gen` section is left out: its GPT-L and GPT-XL runs alone would take the stage's time.
  step bench_generate_cuda 45 "$BUILD_DIR/bench/bench_generate_cuda" \
    --json "$LOG_DIR/bench_generate_cuda.json" --models GPT-B,GPT-XL --batches 1,16 --iters 3
  step torch_ref 100 env OUT="$LOG_DIR" python3 "$CARRY/torch_ref.py" --quick --sections gemm,attn,norm
  step torch_ref_gen 60 python3 "$CARRY/torch_ref.py" --sections gengraph \
    --json "$LOG_DIR/torch_ref_gen.json"
  [[ $DRY_RUN -eq 1 ]] || table
}

table() {
  python3 - "$LOG_DIR" <<'PY' | tee "$LOG_DIR/table.md"
import json, os, sys

log = sys.argv[1]

def load_bench(name):
    path = os.path.join(log, name + ".json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        data = json.load(f)
    out = {}
    for b in data.get("benchmarks", []):
        if b.get("run_type") == "aggregate":
            continue
        out[b["name"].split("/iterations")[0].split("/manual_time")[0]] = b
    return out

ours = {}
for n in ("bench_cuda_gemm", "bench_cuda_attention", "bench_cuda_norm"):
    ours.update(load_bench(n))

torch = []
for tname in ("torch_ref.json", "torch_ref_gen.json"):
    tpath = os.path.join(log, tname)
    if os.path.exists(tpath):
        with open(tpath) as f:
            torch += json.load(f)

# bench_generate_cuda.json: generation rows, keyed like the Google Benchmark names.
gpath = os.path.join(log, "bench_generate_cuda.json")
if os.path.exists(gpath):
    with open(gpath) as f:
        for r in json.load(f):
            ours["generate/%s/%d" % (r["model"], r["images"])] = r

def torch_value(sec, key, **match):
    for r in torch:
        if r.get("sec") == sec and all(r.get(k) == v for k, v in match.items()):
            return r.get(key)
    return None

def our_value(name, counter):
    b = ours.get(name)
    return None if b is None else b.get(counter)

rows = [
    # label, ours (name, counter), torch (sec, key, match), unit, target (kind, value)
    ("bf16 GEMM 8192³", ("gemm/bf16/8192", "TFLOPS"), ("gemm", "tflops", {"dtype": "bfloat16", "n": 8192}), "TFLOP/s", ("ratio", 0.90)),
    ("fp32 GEMM 4096³", ("gemm/float32/4096", "TFLOPS"), ("gemm", "tflops", {"dtype": "float32", "n": 4096}), "TFLOP/s", None),
    ("TF32 GEMM 4096³", ("gemm/float32+tf32/4096", "TFLOPS"), ("gemm", "tflops", {"dtype": "float32+tf32", "n": 4096}), "TFLOP/s", None),
    ("D2D copy 1 GiB", ("copy/1GiB", "TBps"), ("copy", "tbps", {}), "TB/s", None),
    ("attn fwd S=376", ("attn_fwd/S:376/D:64", "TFLOPS"), ("attn_fwd", "tflops", {"S": 376}), "TFLOP/s", None),
    ("attn fwd S=1144", ("attn_fwd/S:1144/D:64", "TFLOPS"), ("attn_fwd", "tflops", {"S": 1144}), "TFLOP/s", None),
    ("attn fwd+bwd S=376", ("attn_fwd_bwd/S:376/D:64", "TFLOPS"), ("attn_fwd_bwd", "tflops", {"S": 376}), "TFLOP/s", None),
    ("attn fwd+bwd S=1144", ("attn_fwd_bwd/S:1144/D:64", "TFLOPS"), ("attn_fwd_bwd", "tflops", {"S": 1144}), "TFLOP/s", ("ratio", 0.70)),
    ("RMSNorm 12032×1280 bf16", ("rmsnorm/12032x1280", "GBps"), ("rmsnorm_eager", "gbps", {}), "GB/s", ("absolute", 2000.0)),
    ("cross-entropy 8192×16384 bf16", ("xent/8192x16384", "GBps"), ("xent_eager", "gbps", {}), "GB/s", ("absolute", 1500.0)),
    # Guided generation of 256 tokens (cfg 4, top-k 1000, bf16) against PyTorch's CUDA-graph
    # decode: at most half its time for GPT-B, 60% for GPT-XL, i.e. ≥ 2× / ≥ 1/0.6 its images/s.
    ("generate GPT-B, 1 image", ("generate/GPT-B/1", "images_per_s"), ("generate_cfg", "images_per_s", {"model": "GPT-B", "variant": "cudagraph", "images": 1}), "images/s", ("ratio", 2.0)),
    ("generate GPT-B, 16 images", ("generate/GPT-B/16", "images_per_s"), ("generate_cfg", "images_per_s", {"model": "GPT-B", "variant": "cudagraph", "images": 16}), "images/s", ("ratio", 2.0)),
    ("generate GPT-XL, 1 image", ("generate/GPT-XL/1", "images_per_s"), ("generate_cfg", "images_per_s", {"model": "GPT-XL", "variant": "cudagraph", "images": 1}), "images/s", ("ratio", 1 / 0.6)),
    ("generate GPT-XL, 16 images", ("generate/GPT-XL/16", "images_per_s"), ("generate_cfg", "images_per_s", {"model": "GPT-XL", "variant": "cudagraph", "images": 16}), "images/s", ("ratio", 1 / 0.6)),
]

def fmt(v):
    return "-" if v is None else ("%.3g" % v if v < 100 else "%.0f" % v)

print()
print("| workload | mentor | PyTorch | ratio | target | |")
print("|---|---|---|---|---|---|")
missed = 0
for label, (name, counter), (sec, key, match), unit, target in rows:
    mine = our_value(name, counter)
    ref = torch_value(sec, key, **match)
    ratio = mine / ref if (mine is not None and ref) else None
    verdict, goal = "", ""
    if target:
        kind, value = target
        goal = ("≥ %.2f× PyTorch" % value) if kind == "ratio" else ("≥ %g %s" % (value, unit))
        got = ratio if kind == "ratio" else mine
        if got is None:
            verdict = "?"
        elif got >= value:
            verdict = "met"
        else:
            verdict = "MISSED"
            missed += 1
    print("| %s | %s %s | %s %s | %s | %s | %s |" % (label, fmt(mine), unit, fmt(ref), unit,
          "-" if ratio is None else "%.2f×" % ratio, goal, verdict))
print()
print("targets missed: %d" % missed)
PY
}

if [[ $DRY_RUN -eq 1 ]]; then
  echo "device-check --dry-run: commands and time budgets (nothing is run)."
  echo "On the CPU machine first: tools/device-check.sh --prepare"
  echo "Then one run-tool call per stage, carrying the git-ignored folder:"
  echo "  run(command=\"bash tools/device-check.sh --stage 1\", carry=[\"device-carry\"], timeout_s=540)"
  echo "  run(command=\"bash tools/device-check.sh --stage 2\", carry=[\"device-carry\"], timeout_s=420)"
  echo "  (stage 2 reuses stage 1's $BUILD_DIR: call it while the machine is warm)"
  PLANNED=0
  stage1
  ((PLANNED <= 480)) || fail "stage 1 budgets add up to ${PLANNED} s, over 480"
  echo "  stage 1 total: ${PLANNED} s"
  PLANNED=0
  stage2
  echo "  [   0 s] table: python3 (inline) over $LOG_DIR/*.json -> $LOG_DIR/table.md"
  ((PLANNED <= 360)) || fail "stage 2 budgets add up to ${PLANNED} s, over 360"
  echo "  stage 2 total: ${PLANNED} s"
  exit $STATUS
fi

echo "device-check: stage $STAGE, build $BUILD_DIR, logs $LOG_DIR"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$LOG_DIR/gpu.txt"
else
  fail "nvidia-smi not found (no GPU?)"
fi
[[ -d "$CARRY/fixtures" ]] || fail "$CARRY/fixtures missing: run --prepare on the CPU machine and carry device-carry"
started=$SECONDS
if [[ "$STAGE" == 1 ]]; then stage1; budget=480; else stage2; budget=360; fi
took=$((SECONDS - started))
((took <= budget)) || fail "stage $STAGE took ${took} s, over its ${budget} s budget"

echo
echo "device-check summary (stage $STAGE, ${took} s of ${budget}):"
for line in "${SUMMARY[@]}"; do echo "  $line"; done
echo "logs: $LOG_DIR"
exit $STATUS
