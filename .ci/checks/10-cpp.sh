#!/usr/bin/env bash
# The C++ entry points: the header-only example through fastoptim::kernels, the C++ tests
# (cpp/tests, through ctest), and the Google Benchmark microbenchmarks (built, and one short run
# to prove they work).
set -euo pipefail
if ! dpkg -s libbenchmark-dev >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq libbenchmark-dev >/dev/null
fi
build=build/ci-cpp
rm -rf "$build"
cmake -S examples/cpp -B "$build/example" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build/example" -j 2 >/dev/null
"$build/example/adam_quadratic"

cmake -S . -B "$build/bench" -DCMAKE_BUILD_TYPE=Release -DFASTOPTIM_PYTHON=OFF -DFASTOPTIM_BENCHMARKS=ON \
  -DFASTOPTIM_CPP_TESTS=ON >/dev/null
cmake --build "$build/bench" -j 2 >/dev/null
(cd "$build/bench" && ctest --output-on-failure)  # named hyper-parameters; what must not compile
out="$build/microbench.txt"
"$build/bench/bench/cpp/fastoptim_microbench" --benchmark_filter='^(adam|lamb)/.*/f32/(probe/)?10000/' \
  --benchmark_min_time=0.01 | tee "$out"
# Google Benchmark exits 0 even when a row fails: every row must have run, each rule beside its probe.
! grep -q "ERROR OCCURRED" "$out"
for rule in adam lamb; do
  steps=$(grep -c "^$rule/[a-z0-9]*/f32/10000/" "$out")
  probes=$(grep -c "^$rule/[a-z0-9]*/f32/probe/10000/" "$out")
  [ "$steps" -ge 1 ] && [ "$steps" -eq "$probes" ] || { echo "$rule: $steps step rows, $probes probe rows"; exit 1; }
done
