#!/usr/bin/env bash
# microbench_rows.sh OUTPUT RULE...: Google Benchmark exits 0 even when a row fails or its filter
# matches nothing, so check its output: no row failed, and each rule ran on at least one target,
# each step row beside its probe row. (Called by checks/10-cpp.sh and checks/40-wheel.sh.)
set -euo pipefail
out=$1
shift
if grep -q "ERROR OCCURRED" "$out"; then echo "a microbenchmark row failed"; exit 1; fi
for rule in "$@"; do
  steps=$(grep -c "^$rule/[a-z0-9]*/f32/10000/" "$out" || true)
  probes=$(grep -c "^$rule/[a-z0-9]*/f32/probe/10000/" "$out" || true)
  [ "$steps" -ge 1 ] && [ "$steps" -eq "$probes" ] || { echo "$rule: $steps step rows, $probes probe rows"; exit 1; }
done
