#!/usr/bin/env bash
# Images/s of `qformer index` alone and under mpirun, on this machine.
# usage: bench/mpi_scaling.sh [MODEL_DIR] [N_IMAGES]
#   MODEL_DIR defaults to the tiny fixture (measures the pipeline overhead:
#   decode, messages, SQLite, FAISS); pass a full-size checkpoint written by
#   bench/gen_checkpoint (e.g. /tmp/qf-fullsize) for compute-bound figures.
# Runs: 1 process x all cores (threads), then mpirun -np 1+W for W = 1, 2
# workers; each configuration on a fresh database; prints images/s and the
# scaling efficiency relative to the single process.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
qf=${QF_BIN:-$here/build/qformer}
model=${1:-$here/tests/fixtures/tiny-blip2-itm}
n=${2:-200}
cores=$(nproc)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 - "$tmp/corpus" "$n" <<'PY'
import os, random, struct, sys, zlib
d, n = sys.argv[1], int(sys.argv[2]); os.makedirs(d)
for i in range(n):
    rnd = random.Random(i); w, h = 160 + i % 97, 120 + i % 53
    raw = b"".join(b"\0" + bytes(rnd.randrange(256) for _ in range(3 * w)) for _ in range(h))
    c = lambda t, x: struct.pack(">I", len(x)) + t + x + struct.pack(">I", zlib.crc32(t + x))
    open(f"{d}/img{i:05d}.png", "wb").write(b"\x89PNG\r\n\x1a\n" + c(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                                            + c(b"IDAT", zlib.compress(raw, 1)) + c(b"IEND", b""))
PY
run() {  # label, command...
  local label=$1; shift
  rm -f "$tmp"/b.db*
  local t0 t1
  t0=$(date +%s.%N)
  "$@" index --model "$model" --db "$tmp/b.db" --quiet "$tmp/corpus" >/dev/null
  t1=$(date +%s.%N)
  /usr/bin/python3 -c "import sys; t=float(sys.argv[2])-float(sys.argv[1]); print(f'{sys.argv[3]:<40} {int(sys.argv[4])/t:8.2f} images/s  ({t:.1f} s)')" "$t0" "$t1" "$label" "$n"
}
echo "model: $model, $n images, $cores cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
run "1 process, $cores threads" "$qf" | tee "$tmp/r1"
for w in 1 2; do
  t=$(( cores / w )); [ "$t" -ge 1 ] || t=1
  run "mpirun -np $((w + 1)) (coordinator + $w worker x $t threads)" \
      mpirun --allow-run-as-root --oversubscribe -np $((w + 1)) -x OPENBLAS_NUM_THREADS=1 "$qf" | tee -a "$tmp/r2"
done
/usr/bin/python3 - "$tmp/r1" "$tmp/r2" <<'PY'
import sys
base = float(open(sys.argv[1]).read().split()[-4])
for line in open(sys.argv[2]):
    rate = float(line.split()[-4])
    print(f"efficiency vs 1 process: {rate / base:5.2f}  ({line.split('(coordinator')[0].strip()})")
PY
