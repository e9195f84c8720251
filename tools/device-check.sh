#!/usr/bin/env bash
# One script for the GPU machine: configure and build (Release, sm_90), run every test (CUDA ones
# included), run the CUDA microbenchmarks and PyTorch's reference timings in the same run, check
# the CUDA tests with compute-sanitizer memcheck, and print a last table of ours against PyTorch.
#
#   tools/device-check.sh --prepare          on the CPU machine, before handing the tree over:
#                                            copies ../shared/bench/torch_ref.py into device-carry/
#   tools/device-check.sh [options]          on the GPU machine
#
# Options:
#   --stage S        all (default) | build | test | bench | sanitize | table; stages can be run in
#                    separate calls on a warm machine (the build folder stays), e.g. when one call
#                    may not run longer than 10 minutes
#   --build-dir DIR  build folder (default: build-device)
#   --cuda-tests     run only the CUDA tests in the test stage (test_cuda_*)
#   --quick          only the benchmarks of the final table; sanitizer over the runtime test only
#   --jobs N         build parallelism (default: nproc)
#
# Logs and JSON results go to $OUT/device-check (or out/device-check when OUT is unset); the table
# at the end is also written there as table.md. Exit status: 0 when everything that ran passed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STAGE=all
BUILD_DIR="$ROOT/build-device"
CUDA_TESTS_ONLY=0
QUICK=0
JOBS="$(nproc 2>/dev/null || echo 8)"
PREPARE=0

while [[ $# -gt 0 ]]; do
  case "$1" in
    --prepare) PREPARE=1 ;;
    --stage) STAGE="$2"; shift ;;
    --build-dir) BUILD_DIR="$(realpath -m "$2")"; shift ;;
    --cuda-tests) CUDA_TESTS_ONLY=1 ;;
    --quick) QUICK=1 ;;
    --jobs) JOBS="$2"; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "device-check: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

CARRY="$ROOT/device-carry"
if [[ $PREPARE -eq 1 ]]; then
  SRC="$ROOT/../shared/bench/torch_ref.py"
  if [[ ! -f "$SRC" ]]; then
    echo "device-check --prepare: $SRC not found" >&2
    exit 1
  fi
  mkdir -p "$CARRY/include"
  cp "$SRC" "$CARRY/torch_ref.py"
  # The GPU machine lacks stb, nlohmann-json and CLI11 (shared/device/README.md): bring Debian's
  # header-only packages along in the git-ignored carry folder (MENTOR_EXTRA_INCLUDE).
  for dir in stb nlohmann CLI; do
    cp -r "/usr/include/$dir" "$CARRY/include/" 2>/dev/null ||
      echo "device-check --prepare: /usr/include/$dir missing (run tools/setup.sh)" >&2
  done
  echo "device-check --prepare: copied torch_ref.py into $CARRY (git-ignored; carry it to the GPU machine)"
  exit 0
fi

LOG_DIR="${OUT:-$ROOT/out}/device-check"
mkdir -p "$LOG_DIR"
STATUS=0
declare -a SUMMARY=()
note() { SUMMARY+=("$1"); echo "== $1"; }
fail() { STATUS=1; note "FAIL: $1"; }
want() { [[ "$STAGE" == all || "$STAGE" == "$1" ]]; }

echo "device-check: stage=$STAGE build=$BUILD_DIR logs=$LOG_DIR"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv \
    | tee "$LOG_DIR/gpu.txt"
else
  echo "device-check: nvidia-smi not found (no GPU?)" | tee "$LOG_DIR/gpu.txt"
fi

# ---- build ---------------------------------------------------------------------------------------
if want build; then
  start=$SECONDS
  # Eigen is visible to the CUDA sources too (op headers include the CPU backend).
  if cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_CUDA_ARCHITECTURES=90 -DMENTOR_CUDA=ON -DMENTOR_WERROR=OFF \
      -DMENTOR_EXTRA_INCLUDE="$CARRY/include" \
      >"$LOG_DIR/configure.log" 2>&1; then
    # -k 0: a target that fails (say, a missing third-party header) does not stop the others.
    if cmake --build "$BUILD_DIR" -j "$JOBS" -- -k 0 >"$LOG_DIR/build.log" 2>&1; then
      note "build: ok ($((SECONDS - start)) s)"
    else
      fail "build: some targets failed ($((SECONDS - start)) s); see $LOG_DIR/build.log"
      grep -E "FAILED:|error" "$LOG_DIR/build.log" | head -20
    fi
  else
    fail "configure failed; see $LOG_DIR/configure.log"
    tail -20 "$LOG_DIR/configure.log"
  fi
fi

# ---- tests ---------------------------------------------------------------------------------------
if want test; then
  start=$SECONDS
  if [[ $CUDA_TESTS_ONLY -eq 0 ]]; then
    # CPU tests in parallel, CUDA tests one program at a time (they share one GPU).
    if ctest --test-dir "$BUILD_DIR" -E "^test_cuda" -j "$JOBS" --output-on-failure --timeout 1200 \
        >"$LOG_DIR/ctest_cpu.log" 2>&1; then
      note "CPU tests: $(grep -E 'tests passed' "$LOG_DIR/ctest_cpu.log" | tail -1)"
    else
      fail "CPU tests: $(grep -E 'tests passed|tests failed' "$LOG_DIR/ctest_cpu.log" | tail -1); see ctest_cpu.log"
      grep -E "\*\*\*Failed|Not Run|Timeout" "$LOG_DIR/ctest_cpu.log" | head -20
    fi
  fi
  if ctest --test-dir "$BUILD_DIR" -R "^test_cuda" --output-on-failure --timeout 1200 \
      >"$LOG_DIR/ctest_cuda.log" 2>&1; then
    note "CUDA tests: $(grep -E 'tests passed' "$LOG_DIR/ctest_cuda.log" | tail -1)"
  else
    fail "CUDA tests: $(grep -E 'tests passed|tests failed' "$LOG_DIR/ctest_cuda.log" | tail -1); see ctest_cuda.log"
    grep -E "\*\*\*Failed|Not Run|Timeout" "$LOG_DIR/ctest_cuda.log" | head -20
  fi
  # The CUDA tests skip (and pass) without a device: make sure they really ran.
  probe="$BUILD_DIR/tests/test_cuda_runtime"
  if [[ -x "$probe" ]] && "$probe" "cuda: fill of every element type" 2>&1 | grep -q "test skipped"; then
    fail "CUDA tests were skipped: no device visible to them"
  fi
  note "tests took $((SECONDS - start)) s"
fi

# ---- benchmarks ------------------------------------------------------------------------------------
if want bench; then
  start=$SECONDS
  for bench in bench_cuda_gemm bench_cuda_attention bench_cuda_norm; do
    exe="$BUILD_DIR/bench/$bench"
    if [[ ! -x "$exe" ]]; then
      fail "$bench was not built"
      continue
    fi
    filter=()
    # --quick: only the workloads of the final table.
    [[ $QUICK -eq 1 ]] && filter+=("--benchmark_filter=^(gemm|copy|attn_fwd|attn_fwd_bwd|rmsnorm|xent)/")
    if "$exe" --benchmark_out="$LOG_DIR/$bench.json" --benchmark_out_format=json "${filter[@]}" \
        >"$LOG_DIR/$bench.log" 2>&1; then
      note "$bench: ok"
    else
      fail "$bench exited with an error; see $bench.log"
      tail -5 "$LOG_DIR/$bench.log"
    fi
  done
  TORCH_REF="$CARRY/torch_ref.py"
  [[ -f "$TORCH_REF" ]] || TORCH_REF="$ROOT/../shared/bench/torch_ref.py"
  if [[ -f "$TORCH_REF" ]]; then
    if OUT="$LOG_DIR" python3 "$TORCH_REF" --sections gemm,attn,norm >"$LOG_DIR/torch_ref.log" 2>&1; then
      note "torch_ref: ok"
    else
      fail "torch_ref.py failed; see torch_ref.log"
      tail -5 "$LOG_DIR/torch_ref.log"
    fi
  else
    fail "torch_ref.py not found (run tools/device-check.sh --prepare on the CPU machine first)"
  fi
  note "benchmarks took $((SECONDS - start)) s"
fi

# ---- compute-sanitizer ------------------------------------------------------------------------------
if want sanitize; then
  start=$SECONDS
  SANITIZER="$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)"
  if [[ ! -x "$SANITIZER" ]]; then
    fail "compute-sanitizer not found"
  else
    tests=(test_cuda_runtime test_cuda_fused test_cuda_ops test_cuda_nn)
    [[ $QUICK -eq 1 ]] && tests=(test_cuda_runtime)
    for t in "${tests[@]}"; do
      exe="$BUILD_DIR/tests/$t"
      [[ -x "$exe" ]] || { fail "$t was not built"; continue; }
      # Synchronise after every launch so a fault is reported at its kernel. The OOM test asks
      # the driver for 4 TiB on purpose; leave it out under the sanitizer.
      if MENTOR_CUDA_SYNC_DEBUG=1 timeout 900 "$SANITIZER" --tool memcheck --error-exitcode 99 \
          --leak-check no "$exe" "~*out of memory*" >"$LOG_DIR/memcheck_$t.log" 2>&1; then
        note "memcheck $t: clean"
      else
        fail "memcheck $t: $(grep -E 'ERROR SUMMARY' "$LOG_DIR/memcheck_$t.log" | tail -1) (see memcheck_$t.log)"
        grep -E "Invalid|out of bounds|Error" "$LOG_DIR/memcheck_$t.log" | head -10
      fi
    done
  fi
  note "sanitizer took $((SECONDS - start)) s"
fi

# ---- the table ---------------------------------------------------------------------------------------
if want table || want bench; then
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
tpath = os.path.join(log, "torch_ref.json")
if os.path.exists(tpath):
    with open(tpath) as f:
        torch = json.load(f)

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
fi

echo
echo "device-check summary (stage $STAGE):"
for line in "${SUMMARY[@]}"; do echo "  $line"; done
echo "logs: $LOG_DIR"
exit $STATUS
