#!/usr/bin/env bash
# Prints the value for -DFASTOPTIM_AVX512: ON where this CPU runs the AVX-512 kernels, else OFF
# (no test could reach them there). The installed fastoptim answers, with the runtime's own CPU
# detection. (Called by checks/10-cpp.sh, 20-sanitizers.sh and 25-thread-sanitizer.sh.)
set -euo pipefail
python -c 'import fastoptim; print("ON" if "avx512" in fastoptim.available_targets() else "OFF")'
