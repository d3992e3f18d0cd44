#!/usr/bin/env bash
# run.sh [SECONDS] [HARNESS...] - builds the harnesses (build.sh) and fuzzes
# each for SECONDS (default 60), one after the other, under ASan + UBSan +
# LeakSanitizer, starting from the committed seeds (corpus/<h>/) and the
# regression inputs (regress/<h>/), which are only read. New interesting
# inputs go to a work corpus outside the tree, kept between runs
# ($QF_FUZZ_WORK/corpus/<h>, default <build>/work); crashes to
# $QF_FUZZ_WORK/artifacts/. HARNESS names drop the "fuzz_" prefix (st_header,
# image, ...); none = all. Prints each harness's executions count; exits 1
# when any harness crashed, leaked, hung or ran out of memory.
# Env: QF_FUZZ_OUT (build dir, default <repo>/build-fuzz), QF_FUZZ_WORK,
# QF_FUZZ_NICE (default 10), QF_FUZZ_ARGS (extra libFuzzer flags).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
secs=${1:-60}
shift || true
out=${QF_FUZZ_OUT:-$root/build-fuzz}
work=${QF_FUZZ_WORK:-$out/work}
nice_n=${QF_FUZZ_NICE:-10}
case "$secs" in ''|*[!0-9]*) echo "usage: run.sh [SECONDS] [HARNESS...]" >&2; exit 2;; esac

bash "$here/build.sh" "$out" || exit 1

# name     max_len  dictionary  malloc limit (MB): one allocation above it is a
# failure. Small inputs must not make the parsers allocate hundreds of MB; the
# tokenizer loaders may (ids up to 2^24 size their tables), so theirs is the RSS limit.
specs="st_header  8192   json   256
st_index   4096   json   256
config     8192   json   256
preproc    2048   json   256
image      32768  image  256
wordpiece  512    text   256
bpe_encode 1024   text   256
spm_encode 1024   text   256
bpe_decode 1024   -      256
bert_load  16384  json   2048
bpe_load   16384  json   2048"

if [ $# -gt 0 ]; then wanted=" $* "; else wanted=""; fi
for w in "$@"; do
    if ! printf '%s\n' "$specs" | awk '{print $1}' | grep -qx "$w"; then
        echo "run.sh: unknown harness '$w' (known: $(printf '%s\n' "$specs" | awk '{print $1}' | tr '\n' ' '))" >&2
        exit 2
    fi
done

mkdir -p "$work/artifacts" "$work/logs"
failed=()
summary=()
while read -r name max_len dict malloc_mb; do
    [ -z "$wanted" ] || [[ "$wanted" == *" $name "* ]] || continue
    bin="$out/fuzz_$name"
    corpus="$work/corpus/$name"
    log="$work/logs/$name.log"
    mkdir -p "$corpus"
    dirs=("$corpus" "$here/corpus/$name")
    [ -d "$here/regress/$name" ] && dirs+=("$here/regress/$name")
    args=(-max_total_time="$secs" -max_len="$max_len" -rss_limit_mb=2048 -malloc_limit_mb="$malloc_mb" -timeout=30
          -print_final_stats=1 -artifact_prefix="$work/artifacts/$name-")
    [ "$dict" != - ] && args+=(-dict="$here/dict/$dict.dict")
    # shellcheck disable=SC2206
    [ -n "${QF_FUZZ_ARGS:-}" ] && args+=($QF_FUZZ_ARGS)
    echo "run.sh: fuzz_$name for ${secs}s (log: $log)"
    nice -n "$nice_n" "$bin" "${args[@]}" "${dirs[@]}" > "$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    [ -n "$execs" ] || execs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n1)
    n_corpus=$(find "$corpus" -type f | wc -l)
    if [ $rc -ne 0 ]; then
        failed+=("$name")
        status="FAILED (rc $rc)"
        echo "run.sh: fuzz_$name FAILED; end of its log:" >&2
        grep -E '^(==[0-9]+==ERROR|SUMMARY|fuzz: |.*runtime error:|artifact_prefix|Test unit written)' "$log" \
            | head -n 20 >&2
    else
        status=ok
    fi
    summary+=("$(printf '%-11s %12s execs  %6s corpus files  %s' "$name" "${execs:-?}" "$n_corpus" "$status")")
done <<< "$specs"

echo "run.sh: ${secs}s per harness; work corpus and logs in $work"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "run.sh: crashes in: ${failed[*]} (inputs in $work/artifacts/)" >&2
    exit 1
fi
