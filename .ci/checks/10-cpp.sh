#!/usr/bin/env bash
# The C++ entry points: the header-only example through fastoptim::kernels, and the Google
# Benchmark microbenchmarks (built, and one short run to prove they work).
set -euo pipefail
if ! dpkg -s libbenchmark-dev >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq libbenchmark-dev >/dev/null
fi
build=build/ci-cpp
rm -rf "$build"
cmake -S examples/cpp -B "$build/example" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build/example" -j 2 >/dev/null
"$build/example/adam_quadratic"

cmake -S . -B "$build/bench" -DCMAKE_BUILD_TYPE=Release -DFASTOPTIM_PYTHON=OFF -DFASTOPTIM_BENCHMARKS=ON >/dev/null
cmake --build "$build/bench" -j 2 >/dev/null
"$build/bench/bench/cpp/fastoptim_microbench" --benchmark_filter='^(adam|lamb)/.*/f32/10000/' --benchmark_min_time=0.01s
