#!/usr/bin/env bash
# serve.sh - latency and throughput of `qformer serve` for text search on the
# full-size retrieval model (random weights, bench/gen_checkpoint) over
# loopback: p50 / p95 latency and requests/s at 1, 4 and 16 concurrent
# clients, a fixed number of requests each (keep-alive connections), next to
# one `qformer search` process per query (model loaded every time).
#
#   bench/serve.sh [BUILD_DIR]        (default: $QF_BINARY_DIR, else ./build)
#
# Environment: QF_FULLSIZE_DIR=DIR keeps the checkpoint there and reuses it
# (default: a temporary folder, removed at exit; F32 by default, as published
# checkpoints are, so the weights are mmapped rather than converted at each
# load: QF_SERVE_GEN_ARGS="--dtype f16" to change); QF_SERVE_REQUESTS requests
# per concurrency level (default 48); QF_SERVE_THREADS server threads
# (default: cores). Not part of ctest: ~4.7 GB of disk, ~6 GB of RAM, and a
# few minutes (the 4 indexed images go through the full-size ViT).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-${QF_BINARY_DIR:-$ROOT/build}}
QF_BIN=${QF_BIN:-$BUILD/qformer}
GEN=${QF_GEN:-$BUILD/gen_checkpoint}
N=${QF_SERVE_REQUESTS:-48}
T=${QF_SERVE_THREADS:-$(nproc)}
for b in "$QF_BIN" "$GEN"; do
    [ -x "$b" ] || { echo "serve.sh: $b not found: build first (cmake --build $BUILD)" >&2; exit 1; }
done
WORK=$(mktemp -d "${TMPDIR:-/tmp}/qf-serve.XXXXXX")
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$WORK"' EXIT
MODEL=${QF_FULLSIZE_DIR:-$WORK/model}

echo "== machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')),"\
     "load average $(cut -d' ' -f1-3 /proc/loadavg); server threads $T, $N requests per level"
if [ -f "$MODEL/config.json" ]; then
    echo "== reusing checkpoint $MODEL"
else
    echo "== generating the full-size checkpoint in $MODEL"
    # shellcheck disable=SC2086
    "$GEN" --out "$MODEL" ${QF_SERVE_GEN_ARGS:---dtype f32} >/dev/null
fi
mkdir -p "$WORK/img"
cp "$ROOT"/tests/fixtures/tiny-blip2-itm/inputs/{rgb_80x52,gray_64x48,palette_45x45}.png \
   "$ROOT"/tests/fixtures/tiny-blip2-itm/inputs/photo_72x56.jpg "$WORK/img/"
echo "== indexing 4 images"
"$QF_BIN" index --model "$MODEL" --db "$WORK/b.db" --threads "$(nproc)" --quiet "$WORK/img" >/dev/null

echo "== qformer search, one process per query (3 runs)"
for i in 1 2 3; do
    t0=$(date +%s.%N)
    OPENBLAS_NUM_THREADS=$(nproc) "$QF_BIN" search --db "$WORK/b.db" -k 4 --format json "a photo of a dog $i" >/dev/null
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "   %.0f ms\n", (b - a) * 1000 }'
done

"$QF_BIN" serve --db "$WORK/b.db" --port 0 --threads "$T" >"$WORK/serve.out" 2>"$WORK/serve.err" &
pid=$!
t0=$(date +%s.%N)
for _ in $(seq 600); do grep -q '^qformer serve: http' "$WORK/serve.out" 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's|^qformer serve: http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$WORK/serve.out")
[ -n "$port" ] || { echo "serve did not start:"; cat "$WORK/serve.err"; exit 1; }
awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "== qformer serve started in %.1f s\n", b - a }'

/usr/bin/python3 - "$port" "$N" <<'PY'
import http.client, sys, threading, time, urllib.parse
port, n = int(sys.argv[1]), int(sys.argv[2])
words = ["a photo of a dog", "a cat on a sofa", "a red car", "mountains at dawn", "two people talking"]
def level(clients, count=None, show=True):
    count = count or n
    lat, lock, next_i = [], threading.Lock(), [0]
    def client():
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                i = next_i[0]; next_i[0] += 1
            if i >= count: return
            q = urllib.parse.quote_plus(f"{words[i % len(words)]} {i}")
            t0 = time.perf_counter()
            c.request("GET", f"/api/search?k=4&q={q}")
            r = c.getresponse(); r.read()
            dt = time.perf_counter() - t0
            assert r.status == 200, r.status
            with lock: lat.append(dt)
    th = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in th: t.start()
    for t in th: t.join()
    wall = time.perf_counter() - t0
    lat.sort()
    pct = lambda p: lat[min(len(lat) - 1, int(round(p * (len(lat) - 1))))] * 1000
    if show: print(f"   {clients:2d} clients: p50 {pct(0.5):7.1f} ms   p95 {pct(0.95):7.1f} ms   {len(lat) / wall:6.2f} requests/s")
level(1, 8, False)   # warm-up (page cache, first allocations); not reported
print("== text search through the API (full-size model, k=4):")
for c in (1, 4, 16):
    level(c)
PY
kill -TERM "$pid"; wait "$pid"; pid=
