#!/usr/bin/env bash
# How long the contributor build takes to pick up a change (CONTRIBUTING.md's table): touches
# one file at a time and times `pip install --no-build-isolation -e .` into a persistent build
# folder, best of $ROUNDS. Run from the repository root in a venv with numpy, pybind11,
# scikit-build-core, cmake and ninja installed. Leaves an editable install behind.
set -euo pipefail
build_dir=${BUILD_DIR:-build/rebuild-times}
rounds=${ROUNDS:-3}
install() { pip install --quiet --no-build-isolation --no-deps -e . -Cbuild-dir="$build_dir" >/dev/null; }
seconds() { local start end; start=$(date +%s.%N); "$@"; end=$(date +%s.%N); echo "$end - $start" | bc; }
best_of() {  # best_of LABEL FILE-TO-TOUCH (- for none)
  local times=()
  for _ in $(seq "$rounds"); do
    [ "$2" = - ] || touch "$2"
    times+=("$(seconds install)")
  done
  printf '%-60s %6.1f s\n' "$1" "$(printf '%s\n' "${times[@]}" | sort -g | head -1)"
}
rm -rf "$build_dir"
printf '%-60s %6.1f s\n' "from scratch (fresh build folder)" "$(seconds install)"
best_of "nothing changed" -
best_of "cpp/src/thread_backoff.cpp (no pybind11)" cpp/src/thread_backoff.cpp
best_of "cpp/src/plan.cpp (pybind11)" cpp/src/plan.cpp
best_of "cpp/src/module.cpp (the bindings)" cpp/src/module.cpp
best_of "cpp/include/fastoptim/rules/lion.hpp (one rule)" cpp/include/fastoptim/rules/lion.hpp
best_of "cpp/include/fastoptim/vec.hpp (every kernel)" cpp/include/fastoptim/vec.hpp
