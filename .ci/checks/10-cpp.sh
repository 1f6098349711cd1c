#!/usr/bin/env bash
# The C++ entry points from the source tree: the examples through fastoptim::kernels and
# fastoptim::runtime, the C++ tests (cpp/tests, through ctest), and the Google Benchmark
# microbenchmarks (built, and one short run to prove they work).
set -euo pipefail
if ! dpkg -s libbenchmark-dev >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq libbenchmark-dev >/dev/null
fi
build=build/ci-cpp
rm -rf "$build"
# examples/cpp adds this repository as a subdirectory (as FetchContent would), with the C++ tests
# and the microbenchmarks switched on: one build of the runtime library serves all three.
# The AVX-512 kernels only where this CPU runs them (as the sanitizer checks): the wheel's build
# and the README's install compile them, and only a CPU with AVX-512 can run what they compile.
avx512=$(bash .ci/lib/avx512_option.sh)
cmake -S examples/cpp -B "$build" -DCMAKE_BUILD_TYPE=Release -DFASTOPTIM_BENCHMARKS=ON -DFASTOPTIM_CPP_TESTS=ON \
  -DFASTOPTIM_AVX512="$avx512" >/dev/null
cmake --build "$build" -j 2 >/dev/null
"$build/adam_quadratic"
"$build/step_all_model" 10 "$build/header_only.bin"
"$build/dispatched_model" 10 "$build/dispatched.bin"
cmp "$build/header_only.bin" "$build/dispatched.bin"  # runtime dispatch: the header-only kernels' bits
(cd "$build/fastoptim" && ctest --output-on-failure)  # named hyper-parameters; what must not compile
out="$build/microbench.txt"
"$build/fastoptim/bench/cpp/fastoptim_microbench" --benchmark_filter='^(adam|lamb)/.*/f32/(probe/)?10000/' \
  --benchmark_min_time=0.01 | tee "$out"
bash .ci/lib/microbench_rows.sh "$out" adam lamb
