#!/usr/bin/env bash
# The layering check (docs/architecture.md, "Layers"): every #include "mentor/..." in
# include/mentor/ goes to the same layer or to one the table below allows, and src/cuda/*.cu reach
# (through any chain of includes) only launcher declarations, kernels and core's plain types: no
# tensor, no autograd, no op header, no Eigen.
#
#   tools/check-layers.sh [root]      check the tree at root (default: this repository)
#   tools/check-layers.sh --self-test check that a forbidden include in a copy of the tree fails
#
# Exit status 0 when the tree keeps to its layers; 1 with one line per violation otherwise.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

# layer of each folder under include/mentor/ (the tensor and its autograd are one layer: a tensor
# holds its autograd slot, and its differentiable views record backward functions)
declare -A layer_of=(
  [core]=core [autograd]=core [backend]=backend [ops]=ops [io]=io [nn]=nn [data]=data
  [models]=models [text]=text [generate]=generate [train]=train [mentor.hpp]=umbrella
)
# the layers each layer may include, besides itself
declare -A allowed=(
  [core]=""
  [backend]="core"
  [ops]="core backend"
  [io]="core"
  [nn]="core backend ops io"
  [data]="core backend io"
  [models]="core backend ops io nn data"
  [text]="core io"
  [generate]="core backend ops io nn data models text"
  [train]="core backend ops io nn data"
  [umbrella]="core backend ops io nn data models text generate train"
)
# What a CUDA translation unit must never reach: the tensor (and with it autograd and Eigen), op
# headers, the CPU backend.
cuda_forbidden='^mentor/(autograd/|ops/|backend/cpu/|core/(tensor|tensor_impl|device_ops)\.hpp$)'

# mentor headers a file includes, one per line ("mentor/x/y.hpp")
includes_of() { grep -oE '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]mentor/[^">]+' "$1" | sed -E 's/.*[<"]//' || true; }

check() {
  local root=$1 failures=0 file rel from to target
  local -A seen
  for file in $(cd "$root/include" && find mentor -name '*.hpp' -o -name '*.cuh' | sort); do
    rel=${file#mentor/}
    from=${layer_of[${rel%%/*}]:-}
    if [[ -z $from ]]; then
      echo "layers: include/$file: folder '${rel%%/*}' has no layer (add it to tools/check-layers.sh and docs/architecture.md)"
      failures=$((failures + 1))
      continue
    fi
    while read -r target; do
      [[ -z $target ]] && continue
      to=${layer_of[$(sed -E 's#^mentor/##; s#/.*##' <<<"$target")]:-}
      if [[ $to != "$from" && " ${allowed[$from]} " != *" $to "* ]]; then
        echo "layers: include/$file ($from) includes $target ($to): $from may include only: ${allowed[$from]:-nothing below it}"
        failures=$((failures + 1))
      fi
    done < <(includes_of "$root/include/$file")
  done

  # src/cuda: walk every chain of includes from each .cu file.
  local cu queue path next
  for cu in "$root"/src/cuda/*.cu; do
    [[ -e $cu ]] || continue
    seen=()
    queue=("$cu")
    while ((${#queue[@]})); do
      path=${queue[0]}
      queue=("${queue[@]:1}")
      if grep -qE '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"](Eigen|unsupported/Eigen)/' "$path"; then
        echo "layers: ${cu#"$root"/} reaches Eigen through ${path#"$root"/}"
        failures=$((failures + 1))
      fi
      while read -r next; do
        [[ -z $next || -n ${seen[$next]:-} ]] && continue
        seen[$next]=1
        if [[ $next =~ $cuda_forbidden ]]; then
          echo "layers: ${cu#"$root"/} reaches $next through ${path#"$root"/}: CUDA sources include only launcher declarations (backend/launch), kernels (backend/cuda) and core's plain types"
          failures=$((failures + 1))
          continue
        fi
        [[ -f $root/include/$next ]] && queue+=("$root/include/$next")
      done < <(includes_of "$path")
    done
  done
  if ((failures)); then
    echo "layers: $failures violation(s)"
    return 1
  fi
  echo "layers: include/mentor and src/cuda keep to their layers"
}

self_test() {
  local tmp status=0 out
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  cp -r "$here/include" "$here/src" "$tmp/"
  check "$tmp" >/dev/null || { echo "self-test: the unmodified copy fails"; return 1; }
  # 1. core including an op header (an upward edge)
  echo '#include "mentor/ops/norm.hpp"' >>"$tmp/include/mentor/core/shape.hpp"
  if out=$(check "$tmp"); then
    echo "self-test: core/shape.hpp including ops/norm.hpp was not caught"
    status=1
  elif ! grep -q 'include/mentor/core/shape.hpp (core) includes mentor/ops/norm.hpp (ops)' <<<"$out"; then
    echo "self-test: the message does not name the edge:"
    echo "$out"
    status=1
  fi
  cp "$here/include/mentor/core/shape.hpp" "$tmp/include/mentor/core/shape.hpp"
  # 2. a launcher header pulling in the tensor, reached from a .cu file two includes away
  echo '#include "mentor/core/tensor.hpp"' >>"$tmp/include/mentor/backend/launch/norm.hpp"
  if out=$(check "$tmp"); then
    echo "self-test: src/cuda reaching core/tensor.hpp through backend/launch/norm.hpp was not caught"
    status=1
  elif ! grep -q 'src/cuda/norm.cu reaches mentor/core/tensor.hpp' <<<"$out"; then
    echo "self-test: the message does not name the .cu file and the header:"
    echo "$out"
    status=1
  fi
  ((status == 0)) && echo "self-test: both forbidden includes were caught"
  return $status
}

if [[ ${1:-} == --self-test ]]; then
  self_test
else
  check "${1:-$here}"
fi
