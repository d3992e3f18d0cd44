#!/usr/bin/env bash
# fuzz_smoke.sh - CI smoke run of the libFuzzer harnesses (tests/fuzz/):
# builds them with clang -fsanitize=fuzzer,address,undefined into
# $QF_BINARY_DIR/fuzz, replays every committed regression input
# (tests/fuzz/regress/<h>/) and seed (tests/fuzz/corpus/<h>/) once, then
# fuzzes each harness for QF_FUZZ_SMOKE_SECONDS (default 10) with a fresh
# work corpus. Fails, never skips, when clang or libFuzzer is missing:
# scripts/setup.sh installs them.
set -euo pipefail
: "${QF_SOURCE_DIR:?}" "${QF_BINARY_DIR:?}"
fuzz="$QF_SOURCE_DIR/tests/fuzz"
out="$QF_BINARY_DIR/fuzz"
secs=${QF_FUZZ_SMOKE_SECONDS:-10}

if ! command -v clang >/dev/null 2>&1; then
    echo "fuzz_smoke: clang not found; run scripts/setup.sh (installs clang libclang-rt-dev)" >&2
    exit 1
fi
bash "$fuzz/build.sh" "$out"
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$QF_SOURCE_DIR/tests/lsan.supp}

# Regression inputs and seeds: each runs once (a crash, leak or failed check
# exits non-zero).
n_replayed=0
for bin in "$out"/fuzz_*; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin")
    name=${name#fuzz_}
    files=()
    for d in "$fuzz/regress/$name" "$fuzz/corpus/$name"; do
        [ -d "$d" ] || continue
        while IFS= read -r -d '' f; do files+=("$f"); done < <(find "$d" -type f -print0 | sort -z)
    done
    [ ${#files[@]} -gt 0 ] || continue
    if ! "$bin" -rss_limit_mb=2048 -timeout=30 "${files[@]}" > "$out/replay_$name.log" 2>&1; then
        echo "fuzz_smoke: fuzz_$name fails on a committed input; end of $out/replay_$name.log:" >&2
        tail -n 30 "$out/replay_$name.log" >&2
        exit 1
    fi
    n_replayed=$((n_replayed + ${#files[@]}))
done
echo "fuzz_smoke: replayed $n_replayed committed inputs (regress + seeds)"

work=$(mktemp -d "$out/smoke-XXXXXX")
trap 'rm -rf "$work"' EXIT
QF_FUZZ_OUT="$out" QF_FUZZ_WORK="$work" QF_FUZZ_NICE=0 bash "$fuzz/run.sh" "$secs"
