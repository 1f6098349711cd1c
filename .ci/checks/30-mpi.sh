#!/usr/bin/env bash
# fastoptim.distributed under MPI, in the CI venv (fastoptim and pytest installed): install an
# MPI and mpi4py, run the multi-process checks under mpiexec -n 2 and -n 3 (3 ranks on this
# 2-core machine: MPICH runs them as they are, the tests give Open MPI its --oversubscribe),
# then the rest of tests/test_distributed.py (checkpoints moved between world sizes, the
# example), with skips turned into failures.
set -euo pipefail
export PYTHONUNBUFFERED=1

if ! python -m pip install --quiet mpi4py mpich; then
  echo "pip's MPICH did not install; falling back on Debian's Open MPI"
  apt-get update -qq && apt-get install -y -qq openmpi-bin libopenmpi-dev >/dev/null
  python -m pip install --quiet --no-binary=mpi4py mpi4py
fi
python -c 'from mpi4py import MPI; print("MPI:", MPI.Get_library_version().splitlines()[0])'

# The one mpiexec finder (also the tests' and the benchmark's): Open MPI's flags included.
words=$(python -m fastoptim.distributed.launcher)
mapfile -t mpiexec <<<"$words"
for n in 2 3; do
  echo "-- ${mpiexec[*]} -n $n python tests/mpi/check_distributed.py"
  timeout --kill-after=10 300 "${mpiexec[@]}" -n "$n" python tests/mpi/check_distributed.py --size "$n"
done

FASTOPTIM_REQUIRE_MPI=1 timeout --kill-after=10 600 \
  python -m pytest tests/test_distributed.py -p no:cacheprovider -k "not every_check_under_mpiexec"
