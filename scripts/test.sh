#!/usr/bin/env bash
# Runs every test of qformer: installs dependencies (scripts/setup.sh), builds
# with warnings as errors, runs ctest (labels unit, golden, e2e, mpi), then
# builds again with AddressSanitizer + UBSan and runs the suite under them.
# Usage: scripts/test.sh [--no-sanitize] [ctest args...]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
sanitize=1
if [ "${1:-}" = "--no-sanitize" ]; then sanitize=0; shift; fi
bash scripts/setup.sh
jobs=$(nproc)

cmake -S . -B build -DQF_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs" "$@"

if [ "$sanitize" = 1 ]; then
  cmake -S . -B build-asan -DQF_WERROR=ON -DQF_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
  cmake --build build-asan -j"$jobs"
  # OpenMPI's own allocations are not ours to leak-check; everything else is.
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  LSAN_OPTIONS=suppressions="$here/tests/lsan.supp" \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j"$jobs" "$@"
fi
