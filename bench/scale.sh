#!/usr/bin/env bash
# scale.sh - a qformer index of N synthetic images, built and searched through
# the same store, vector-index, tuning and search code as `qformer index` and
# `qformer search` (bench/bench_scale.c; no ViT: the features are synthetic,
# clustered and embedding-like, 32 x 256 per image). Prints one JSON object:
# build time, peak RSS, database and index sizes, the factory and the tuned
# search settings, search latency p50/p95 and recall@10 against an exact scan.
#
#   bench/scale.sh N [--factory F] [--max-index-memory SIZE] [--queries Q]
#                    [--nprobe N] [--candidates N] [--seed S] [--store-dtype f16]
#                    [--search-only] [--sweep NPROBE:CANDIDATES,...] [--cold]
#
# Default factory: auto (as `qformer index`). Environment: QF_BINARY_DIR (build
# folder, default ./build), QF_SCALE_DIR=DIR keeps the work folder (database,
# index, empty image files) there and reuses it (add --search-only to measure
# other --nprobe/--candidates on the database already built; --sweep prints
# latency and recall at each listed setting to stderr, one JSON line each;
# --cold drops the database from the OS page cache before each timed pass). Disk: ~33 KiB per
# image (F32 features in SQLite) + the index. Not part of ctest. Figures in the
# README were taken with OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 nice -n 10.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${QF_BINARY_DIR:-$ROOT/build}
BENCH=$BUILD/bench_scale
[ -x "$BENCH" ] || { echo "scale.sh: $BENCH not found: build first (cmake --build $BUILD)" >&2; exit 1; }
[ $# -ge 1 ] && [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -gt 0 ] || { echo "usage: scale.sh N [bench_scale options]" >&2; exit 2; }
N=$1; shift
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-2}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$OPENBLAS_NUM_THREADS}
if [ -n "${QF_SCALE_DIR:-}" ]; then WORK=$QF_SCALE_DIR; mkdir -p "$WORK"
else WORK=$(mktemp -d "${TMPDIR:-/tmp}/qf-scale.XXXXXX"); trap 'rm -rf "$WORK"' EXIT; fi
# the model folder: the tiny fixture with BLIP-2's ITC shapes (32 queries x 256);
# only config.json and the weight-file header (fingerprint) are read
FIX=${QF_FIXTURES:-$ROOT/tests/fixtures}/tiny-blip2-itm
mkdir -p "$WORK/model" "$WORK/images"
for f in "$FIX"/*; do [ "$(basename "$f")" = config.json ] || ln -sf "$f" "$WORK/model/"; done
python3 - "$FIX/config.json" "$WORK/model/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["num_query_tokens"] = 32; c["image_text_hidden_size"] = 256
json.dump(c, open(sys.argv[2], "w"))
PY
# N empty image files named by index (the scan reads names and sizes only)
have=$(cat "$WORK/images/count" 2>/dev/null || echo 0)
if [ "$have" != "$N" ]; then
    python3 - "$WORK/images" "$N" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    sub = f"{d}/{i // 10000:03d}"
    if i % 10000 == 0: os.makedirs(sub, exist_ok=True)
    open(f"{sub}/{i:09d}.jpg", "wb").close()
open(f"{d}/count", "w").write(str(n))
PY
fi
exec "$BENCH" --model "$WORK/model" --db "$WORK/scale.db" --images "$WORK/images" "$@"
