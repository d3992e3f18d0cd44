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
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  export LSAN_OPTIONS=suppressions="$here/tests/lsan.supp"
  # everything but MPI with leak checking; the fuzz smoke test builds its own
  # sanitized harnesses and already ran above
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j"$jobs" -LE mpi -E fuzz_smoke "$@"
  # OpenMPI's plugins leak at exit from unloaded modules LeakSanitizer cannot
  # name (so no suppression matches): MPI runs are checked for memory errors only
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j"$jobs" -L mpi "$@"
fi
