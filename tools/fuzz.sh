#!/usr/bin/env bash
# Builds the libFuzzer harnesses (tests/fuzz/fuzz_<name>.cpp; clang, ASan + UBSan) in build-fuzz/
# and runs each for a given time, in libFuzzer's plain mode (its fork mode missed crashes here).
#
#   tools/fuzz.sh [--seconds N] [--jobs J] [--build-only|--no-build] [harness...]
#                                                          default: 600 s each, all harnesses
#   tools/fuzz.sh --ci                                                    each 60 s, 2 at a time
#
# Corpora live in build-fuzz/corpus/<name>/, seeded from tests/goldens (safetensors, PNG/JPEG,
# IDX and gzip'd IDX), the fixtures' configs.json when ../shared is present, and what
# tests/fuzz/make_seeds.cpp writes (every config's to_json, a real checkpoint manifest). A finding
# (crash, sanitizer report, uncaught non-mentor exception, timeout, allocation over
# -malloc_limit_mb, RSS over -rss_limit_mb) is saved to build-fuzz/findings/ and the harness is
# restarted for the rest of its time; in --ci mode any finding fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=600
jobs=2
ci=0
build_only=0
no_build=0
harnesses=()
while (($#)); do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --ci) ci=1; seconds=60; shift ;;
    --build-only) build_only=1; shift ;;
    --no-build) no_build=1; shift ;;  # run the binaries as they are (e.g. while headers change)
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) harnesses+=("$1"); shift ;;
  esac
done
if ((${#harnesses[@]} == 0)); then
  for src in tests/fuzz/fuzz_*.cpp; do
    name=$(basename "$src" .cpp)
    harnesses+=("${name#fuzz_}")
  done
fi

cxx=${MENTOR_FUZZ_CXX:-clang++}
command -v "$cxx" >/dev/null || { echo "fuzz.sh: $cxx not found (apt-get install clang)" >&2; exit 2; }
out=build-fuzz
mkdir -p "$out/corpus" "$out/findings" "$out/logs"
# -O1 -g: fast enough to fuzz, with line numbers in reports. OpenMP as the library is built.
flags=(-std=c++20 -O1 -g -fno-omit-frame-pointer -fopenmp -Iinclude -Itests/fuzz
       -isystem /usr/include/eigen3 -isystem /usr/include/stb
       -Wall -Wextra -Werror -Wno-unknown-pragmas)
libs=(-lpng -ljpeg -lz -lpthread)
sanitize=(-fsanitize=address,undefined -fno-sanitize-recover=undefined)

newest_input() {  # newest mtime among the harness source, its helpers and the library headers
  find "$1" include tests/fuzz/*.hpp -type f -printf '%T@\n' | sort -n | tail -1
}
build() {  # build <source> <binary> <extra flags...>
  local src=$1 bin=$2
  shift 2
  if ((no_build)) && [[ -x $bin ]]; then return 0; fi
  if [[ -x $bin ]] && [[ $(stat -c %Y "$bin") -ge $(newest_input "$src" | cut -d. -f1) ]]; then
    return 0
  fi
  echo "fuzz.sh: building $bin"
  nice "$cxx" "${flags[@]}" "$@" "$src" -o "$bin" "${libs[@]}"
}

# Builds in parallel, $jobs at a time (each translation unit parses Eigen).
pids=()
for h in "${harnesses[@]}"; do
  [[ -f tests/fuzz/fuzz_$h.cpp ]] || { echo "fuzz.sh: no harness tests/fuzz/fuzz_$h.cpp" >&2; exit 2; }
  build "tests/fuzz/fuzz_$h.cpp" "$out/fuzz_$h" "${sanitize[@]}" -fsanitize=fuzzer &
  pids+=($!)
  if ((${#pids[@]} >= jobs)); then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
done
build tests/fuzz/make_seeds.cpp "$out/make_seeds" &
pids+=($!)
for pid in "${pids[@]}"; do wait "$pid"; done
((build_only)) && exit 0

# ---- seed corpora
seed() {  # seed <harness> <files...>: copies the files that exist
  local dir=$out/corpus/$1
  shift
  mkdir -p "$dir"
  for f in "$@"; do [[ -f $f ]] && cp -n "$f" "$dir/"; done
  return 0
}
"$out/make_seeds" "$out/corpus"
# The goldens' small file, and small hand-made files of every dtype (big seeds make slow inputs).
seed safetensors tests/goldens/optim.safetensors
python3 - "$out/corpus/safetensors" <<'EOF'
import json, struct, sys
sizes = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
         "BOOL": 1}
header, data = {"__metadata__": {"format": "pt"}}, b""
for dtype, size in sizes.items():
    shape = [2, 3] if dtype in ("F32", "I64") else [3]
    count = shape[0] * (shape[1] if len(shape) > 1 else 1)
    header[dtype.lower()] = {"dtype": dtype, "shape": shape,
                             "data_offsets": [len(data), len(data) + count * size]}
    data += bytes((i * 37 + 1) % 2 if dtype == "BOOL" else (i * 37 + 1) % 256
                  for i in range(count * size))
text = json.dumps(header).encode()
open(sys.argv[1] + "/all_dtypes.safetensors", "wb").write(struct.pack("<Q", len(text)) + text + data)
empty = json.dumps({"e": {"dtype": "F32", "shape": [0, 4], "data_offsets": [0, 0]}}).encode()
open(sys.argv[1] + "/empty.safetensors", "wb").write(struct.pack("<Q", len(empty)) + empty)
EOF
seed image tests/goldens/image_*.png tests/goldens/image_*.jpg
seed gunzip tests/goldens/*.gz
seed idx tests/goldens/*.idx tests/goldens/*.idx.gz
for configs in ../shared/fixtures/upstream/configs.json ../shared/fixtures/mentor/configs.json; do
  [[ -f $configs ]] || continue
  python3 - "$configs" "$out/corpus/config" <<'EOF'
import json, pathlib, sys
entries = json.load(open(sys.argv[1]))
for name, value in entries.items():
    pathlib.Path(sys.argv[2], f"fixture_{name}.json").write_text(json.dumps(value))
EOF
done

# ---- runs
run_one() {  # run_one <harness>: plain mode, restarted after each finding until the time is spent
  local h=$1 bin=$out/fuzz_$1 log=$out/logs/$1.log
  local end=$((SECONDS + seconds)) runs=0 findings=0 execs=0 max_len=8192
  [[ $h == image ]] && max_len=65536  # room for real PNG/JPEG structure
  : >"$log"
  # Harnesses that go through files write one per input: keep them in memory (tmpfs) when possible.
  local scratch
  scratch=$(mktemp -d /dev/shm/mentor-fuzz.XXXXXX 2>/dev/null || mktemp -d)
  while ((SECONDS < end)); do
    local left=$((end - SECONDS))
    ((left < 1)) && break
    runs=$((runs + 1))
    local status=0
    TMPDIR=$scratch ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
      "$bin" "$out/corpus/$h" -max_total_time="$left" -timeout=10 -rss_limit_mb=2048 \
      -malloc_limit_mb=1024 -max_len="$max_len" -print_final_stats=1 \
      -artifact_prefix="$out/findings/$h-" >"$log.run" 2>&1 || status=$?
    cat "$log.run" >>"$log"
    local n
    n=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log.run" | tail -1 | grep -o '[0-9]*$' || true)
    execs=$((execs + ${n:-0}))
    if ((status != 0)); then
      findings=$((findings + 1))
      echo "fuzz.sh: $h: finding (exit $status), see $log and $out/findings/" >&2
      ((ci)) && break
    fi
  done
  rm -rf "$scratch"
  local corpus
  corpus=$(find "$out/corpus/$h" -type f | wc -l)
  echo "$h: runs $runs, executions $execs, corpus $corpus files, findings $findings, ${seconds}s" \
    | tee "$out/logs/$h.summary"
  ((findings == 0))
}

failed=()
active=()
names=()
for h in "${harnesses[@]}"; do
  run_one "$h" &
  active+=($!)
  names+=("$h")
  if ((${#active[@]} >= jobs)); then
    wait "${active[0]}" || failed+=("${names[0]}")
    active=("${active[@]:1}")
    names=("${names[@]:1}")
  fi
done
for i in "${!active[@]}"; do wait "${active[$i]}" || failed+=("${names[$i]}"); done

if ((${#failed[@]})); then
  echo "fuzz.sh: findings in: ${failed[*]} (inputs in $out/findings/)" >&2
  exit 1
fi
echo "fuzz.sh: no findings"
