#!/usr/bin/env bash
# The op-case coverage check: every op exported by mentor/ops/ops.hpp has a case in the op-case
# registry (tests/op_cases/), and every case belongs to an exported op. The op names are scanned
# from the headers here; `op_cases coverage` compares them with its registry and names what is
# missing.
#
#   tools/check-op-cases.sh [--headers DIR] OP_CASES   check (DIR: the op headers, default
#                                                      include/mentor/ops of this repository)
#   tools/check-op-cases.sh --exported [DIR]           print the exported op names
#   tools/check-op-cases.sh --self-test OP_CASES       show that the check fails when a case is
#                                                      left out and when a new op has no case
#
# What counts as an exported op: every function template declared at namespace scope of `mentor`
# itself in include/mentor/ops/*.hpp (all of which ops.hpp includes), that is
#   - its `template <...>` line starts at column 0 while the innermost open namespace is `mentor`
#     (so nothing in the nested namespaces detail, cpu and cuda, and no member function counts),
#   - the declaration after the template head is a function (not a struct, class, alias, concept
#     or variable),
#   - it is not an operator (operator+ and the rest spell add, sub, mul, div, neg, which are ops),
#   - it is not one of the skeleton's helpers below, which are not ops of their own.
# Overloads are one op (sum(x) and sum(x, dim): "sum"). A case belongs to the op named by its name
# up to the first '.' ("sum.dim_keepdim" is a case of "sum").
#
# Exit status 0 when every exported op has a case and every case an op; 1 otherwise, naming them.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

# Not ops: apply and launch are the op skeleton itself (ops/apply.hpp); unary_op is the one entry
# behind exp, log, ... (their cases cover it); rope_2d_table builds apply_rope's constant table (no
# tensor input: nothing to differentiate or compare; tests/ops/test_rope.cpp checks its values).
helpers=(apply launch unary_op rope_2d_table)

exported_ops() {
  local headers=$1
  awk '
    FNR == 1 { depth = 0; delete ns }
    /^namespace [A-Za-z_:]+ \{/ { ns[++depth] = $2; next }
    /^namespace \{/ { ns[++depth] = "(anonymous)"; next }
    /^\}  \/\/ namespace/ { if (depth > 0) depth--; next }
    depth == 1 && ns[1] == "mentor" && /^template </ {
      head = $0
      while (gsub(/</, "<", head) > gsub(/>/, ">", head) && (getline line) > 0) head = head " " line
      do { if ((getline decl) <= 0) next } while (decl ~ /^ *requires/)
      if (decl ~ /^(struct|class|union|using|concept|inline constexpr|constexpr|static) /) next
      while (index(decl, "(") == 0 && (getline line) > 0) decl = decl " " line
      pre = substr(decl, 1, index(decl, "(") - 1)
      if (pre ~ /operator/) next
      n = split(pre, words, /[ *&>]+/)
      if (words[n] != "") print words[n]
    }
  ' "$headers"/*.hpp | sort -u | grep -vxF -f <(printf '%s\n' "${helpers[@]}")
}

# check HEADERS OP_CASES [op_cases coverage options]
check() {
  local headers=$1 binary=$2
  shift 2
  exported_ops "$headers" | "$binary" coverage "$@"
}

self_test() {
  local binary=$1 ops=$here/include/mentor/ops out failures=0
  local tmp
  tmp=$(mktemp -d)
  # shellcheck disable=SC2064  # the folder's name now: $tmp is local
  trap "rm -rf '$tmp'" EXIT

  if ! out=$(check "$ops" "$binary"); then
    echo "self-test: FAIL: the tree itself fails the check:"
    echo "$out"
    failures=$((failures + 1))
  fi

  # A case left out: the registry without the cases of its first op.
  local victim
  victim=$("$binary" list | head -n 1)
  if out=$(check "$ops" "$binary" --without "$victim"); then
    echo "self-test: FAIL: the check passes with the cases of '$victim' left out"
    failures=$((failures + 1))
  elif ! grep -qE "without a case.* $victim( |$)" <<<"$out"; then
    echo "self-test: FAIL: leaving out '$victim' fails, but the message does not name it: $out"
    failures=$((failures + 1))
  fi

  # A new public op without a case, beside a new detail helper (which is not an op).
  cp "$ops"/*.hpp "$tmp"/
  local file=$tmp/unary.hpp last
  last=$(grep -n '^}  // namespace mentor$' "$file" | tail -n 1 | cut -d: -f1)
  {
    head -n $((last - 1)) "$file"
    cat <<'EOF'
namespace detail {
template <class T, class D>
Tensor<T, D> self_test_helper(const Tensor<T, D>& x) {
  return x;
}
}  // namespace detail

template <FloatingElement T, class D>
Tensor<T, D> self_test_op(const Tensor<T, D>& x) {
  return x;
}

EOF
    tail -n +"$last" "$file"
  } >"$tmp/unary.hpp.new"
  mv "$tmp/unary.hpp.new" "$file"
  if out=$(check "$tmp" "$binary"); then
    echo "self-test: FAIL: a new op without a case passes the check"
    failures=$((failures + 1))
  elif ! grep -qE "without a case.* self_test_op( |$)" <<<"$out" || grep -q self_test_helper <<<"$out"; then
    echo "self-test: FAIL: the new op is not named alone in: $out"
    failures=$((failures + 1))
  fi

  if ((failures)); then
    return 1
  fi
  echo "check-op-cases self-test: passed (the tree passes; leaving out '$victim' fails naming it;" \
    "a new op without a case fails naming it, a detail helper is not counted)"
}

case ${1:-} in
  --self-test)
    [[ $# -eq 2 ]] || { echo "usage: $0 --self-test OP_CASES" >&2; exit 2; }
    self_test "$2"
    ;;
  --exported)
    exported_ops "${2:-$here/include/mentor/ops}"
    ;;
  --headers)
    [[ $# -eq 3 ]] || { echo "usage: $0 --headers DIR OP_CASES" >&2; exit 2; }
    check "$2" "$3"
    ;;
  "" | -*)
    echo "usage: $0 [--headers DIR] OP_CASES | --exported [DIR] | --self-test OP_CASES" >&2
    exit 2
    ;;
  *)
    check "$here/include/mentor/ops" "$1"
    ;;
esac
