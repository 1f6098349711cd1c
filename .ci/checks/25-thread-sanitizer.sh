#!/usr/bin/env bash
# The extension built with ThreadSanitizer, running the threaded tests (one optimizer stepped,
# edited and checkpointed from several threads; gradients dropped and resized by other threads).
# Built without OpenMP: GNU OpenMP is not instrumented, so TSan cannot see its barriers and
# reports every hand-over between a parallel region and the calling thread as a race. Without
# it each step's kernels run on the calling thread, and the Python threads still overlap.
set -euo pipefail
python -m pip install --quiet pybind11 cmake ninja
build=build/ci-tsan
rm -rf "$build"
# The AVX-512 kernels only where this CPU runs them: elsewhere no test reaches them (a third of the build).
avx512=$(bash .ci/lib/avx512_option.sh)
# -O1, as the AddressSanitizer build: the threaded tests need the instrumentation, not speed.
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
  -DCMAKE_DISABLE_FIND_PACKAGE_OpenMP=ON \
  -DFASTOPTIM_AVX512="$avx512" \
  -DCMAKE_CXX_FLAGS="-fsanitize=thread -fno-omit-frame-pointer" -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=thread" \
  -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" >/dev/null
cmake --build "$build" >/dev/null
mkdir -p "$build/site"
cp -r python/fastoptim "$build/site/"
cp "$build"/_core*.so "$build/site/fastoptim/"

export LD_PRELOAD="$(g++ -print-file-name=libtsan.so)"
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
export PYTHONPATH="$PWD/$build/site"
python -c "import fastoptim, sys; assert fastoptim.__file__.startswith(sys.argv[1]) and not fastoptim.config()['openmp']" \
  "$PWD/$build/site"
python -m pytest -q -p no:cacheprovider tests/test_concurrency.py tests/test_memory_safety.py
