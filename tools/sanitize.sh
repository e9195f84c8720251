#!/usr/bin/env bash
# ASan + UBSan over the core, ops, io, data and train tests (CI's sanitizer stage).
# Kept lean so CI stays within its time: CUDA, examples and benchmarks off, and the tests built as
# one unity program per folder (tests_<folder>, the default of tests/CMakeLists.txt), since
# compiling Eigen and the templates once per file was most of this stage. -Og -g1: fast enough to run, and line tables
# to point at a line.
#
#   tools/sanitize.sh [build-dir]      default build-sanitize; MENTOR_JOBS sets the parallelism
#
# Exit status: non-zero when a program fails or a sanitizer reports anything (UBSan is fatal:
# -fno-sanitize-recover; ASan aborts on the first error; LeakSanitizer fails the program at exit).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-sanitize}
jobs=${MENTOR_JOBS:-$(nproc)}
# The longest compile first: ninja starts targets in the order asked.
programs=(tests_train tests_ops tests_core tests_io tests_data)

start=$SECONDS
# MENTOR_BLAS=EIGEN: the main build's GEMM kernel is OpenBLAS (not instrumented); this one tests the
# portable Eigen kernel, under the sanitizers.
# -Wno-uninitialized: at -Og GCC 12 reports its own AVX-512 intrinsics' deliberately undefined `__Y`
# operands (inlined into Eigen's kernels, now compiled here in src/instances) as uninitialized.
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-Og -g1 -Wno-uninitialized" -DMENTOR_WERROR=ON -DMENTOR_SANITIZE=ON \
  -DMENTOR_CUDA=OFF -DMENTOR_BUILD_EXAMPLES=OFF -DMENTOR_BUILD_BENCH=OFF \
  -DMENTOR_TEST_PROGRAMS=folder -DMENTOR_BLAS=EIGEN >/dev/null
cmake --build "$build" -j "$jobs" --target "${programs[@]}" sanitize_canary
echo "sanitize: built ${#programs[@]} programs in $((SECONDS - start)) s"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=0:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# The canary proves the build is sanitized: each of its bugs must be reported and fail it.
for bug in "heap-overflow:AddressSanitizer: heap-buffer-overflow" "signed-overflow:runtime error: signed integer overflow"; do
  if "$build/tests/sanitize_canary" "${bug%%:*}" >"$build/canary.log" 2>&1 ||
    ! grep -q "${bug#*:}" "$build/canary.log"; then
    echo "sanitize: the canary's ${bug%%:*} was not reported as '${bug#*:}': the build is not sanitized"
    cat "$build/canary.log"
    exit 1
  fi
done
echo "sanitize: canary caught (heap overflow by ASan, signed overflow by UBSan)"
failed=()
for p in "${programs[@]}"; do
  t0=$SECONDS
  # Tests find their goldens relative to the repository root, as under ctest.
  if "$build/tests/$p" >"$build/$p.sanitize.log" 2>&1; then
    echo "sanitize: $p ok ($((SECONDS - t0)) s)"
  else
    echo "sanitize: $p FAILED ($((SECONDS - t0)) s); last lines of $build/$p.sanitize.log:"
    tail -n 40 "$build/$p.sanitize.log"
    failed+=("$p")
  fi
done
echo "sanitize: ${#programs[@]} programs, ${#failed[@]} failed, $((SECONDS - start)) s in all"
((${#failed[@]} == 0))
