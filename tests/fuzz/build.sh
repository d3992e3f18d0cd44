#!/usr/bin/env bash
# build.sh [OUT_DIR] - builds the libFuzzer harnesses of tests/fuzz/ with
# clang -fsanitize=fuzzer,address,undefined into OUT_DIR (default
# <repo>/build-fuzz). Only the parser sources the harnesses use are compiled
# (embed/{common,safetensors,config,image,bert}.c, embed/bpe.c, and the C++
# shim embed/spm.cc over libsentencepiece, built with clang++): no FAISS,
# MPI, OpenBLAS or SQLite. Objects are rebuilt only when a source or header
# is newer. Fails (exit 1) when clang or its libFuzzer runtime is missing:
# scripts/setup.sh installs both (packages clang, libclang-rt-dev).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$root/build-fuzz}
CC=${CC:-clang}
CXX=${CXX:-clang++}
mkdir -p "$out/obj"

if ! command -v "$CC" >/dev/null 2>&1; then
    echo "fuzz build: '$CC' not found; run scripts/setup.sh (installs clang libclang-rt-dev)" >&2
    exit 1
fi
probe="$out/obj/probe"
printf '#include <stdint.h>\n#include <stddef.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' \
    > "$probe.c"
if ! "$CC" -fsanitize=fuzzer,address,undefined "$probe.c" -o "$probe" 2> "$probe.log"; then
    cat "$probe.log" >&2
    echo "fuzz build: $CC cannot link -fsanitize=fuzzer (libFuzzer runtime missing?);" \
         "run scripts/setup.sh (installs clang libclang-rt-dev)" >&2
    exit 1
fi

deps=(libpng libjpeg jansson libutf8proc sentencepiece)
read -r -a dep_cflags <<< "$(pkg-config --cflags "${deps[@]}")"
read -r -a dep_libs <<< "$(pkg-config --libs "${deps[@]}")"
san=(-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
cflags=(-std=c11 -g -O1 -D_GNU_SOURCE -Wall -Wextra -Wpedantic -Wno-unused-parameter
        -Wno-unknown-pragmas -Werror -I"$root" "${dep_cflags[@]}"
        "-DQF_FUZZ_FIXTURES=\"$root/tests/fixtures\"")
lib_src=(embed/common.c embed/safetensors.c embed/config.c embed/image.c embed/bert.c embed/bpe.c embed/spm.cc)
# vptr checks need the C++ UBSan runtime, which the C link of the harnesses lacks
cxxflags=(-std=c++17 -g -O1 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -Werror -I"$root" "${dep_cflags[@]}")
headers=("$root"/embed/*.h "$root"/query/*.h "$here"/*.h)

newer_than() {   # newer_than TARGET FILE...: 0 when TARGET is missing or older than a FILE
    local t=$1; shift
    [ -e "$t" ] || return 0
    local f
    for f in "$@"; do [ "$f" -nt "$t" ] && return 0; done
    return 1
}

pids=()
objs=()
for src in "${lib_src[@]}"; do
    obj="$out/obj/$(echo "$src" | tr / _).o"
    objs+=("$obj")
    if newer_than "$obj" "$root/$src" "${headers[@]}" "$0"; then
        case "$src" in
        *.cc) "$CXX" "${cxxflags[@]}" "${san[@]}" -fno-sanitize=vptr -fsanitize=fuzzer-no-link -c "$root/$src" -o "$obj" & ;;
        *)    "$CC" "${cflags[@]}" "${san[@]}" -fsanitize=fuzzer-no-link -c "$root/$src" -o "$obj" & ;;
        esac
        pids+=($!)
        if [ ${#pids[@]} -ge 2 ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
    fi
done
for p in "${pids[@]}"; do wait "$p"; done

pids=()
built=()
for h in "$here"/fuzz_*.c; do
    name=$(basename "$h" .c)
    bin="$out/$name"
    built+=("$name")
    if newer_than "$bin" "$h" "${objs[@]}" "${headers[@]}" "$0"; then
        "$CC" "${cflags[@]}" "${san[@]}" -fsanitize=fuzzer "$h" "${objs[@]}" "${dep_libs[@]}" -lstdc++ -lm \
            -o "$bin" &
        pids+=($!)
        if [ ${#pids[@]} -ge 2 ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
    fi
done
for p in "${pids[@]}"; do wait "$p"; done
echo "fuzz build: ${#built[@]} harnesses in $out: ${built[*]}"
