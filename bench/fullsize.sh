#!/usr/bin/env bash
# fullsize.sh - full-size check and speed benchmark on random weights with the
# real Salesforce/blip2-itm-vit-g shapes (~1.17 B parameters, F16 ~2.3 GB):
# generates the checkpoint (bench/gen_checkpoint), runs `qformer info` on it,
# then times `qformer embed` with 1 and with 3 images; the difference / 2 is
# the cost of one image with model load and text separated out.
#
#   bench/fullsize.sh [BUILD_DIR]        (default: $QF_BINARY_DIR, else ./build)
#
# Environment: QF_FULLSIZE_DIR=DIR keeps the checkpoint there and reuses it on
# later runs (default: a temporary folder, removed at exit); QF_FULLSIZE_GEN_ARGS
# extra gen_checkpoint options (e.g. "--dtype bf16 --shards 2");
# OPENBLAS_NUM_THREADS (default 2; OMP_NUM_THREADS follows it).
# Not part of ctest: it needs ~2.5 GB of disk, ~7 GB of RAM and minutes.
# shellcheck disable=SC2154  # T_* and RSS_* are assigned by run_timed (printf -v)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-${QF_BINARY_DIR:-$ROOT/build}}
QF_BIN=${QF_BIN:-$BUILD/qformer}
GEN=${QF_GEN:-$BUILD/gen_checkpoint}
IMG=$ROOT/tests/fixtures/tiny-blip2-itm/inputs/photo_72x56.jpg
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-2}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$OPENBLAS_NUM_THREADS}

for b in "$QF_BIN" "$GEN"; do
    [ -x "$b" ] || { echo "fullsize.sh: $b not found: build first (cmake --build $BUILD)" >&2; exit 1; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/qf-fullsize.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
MODEL=${QF_FULLSIZE_DIR:-$WORK/model}

now() { date +%s.%N; }
# run_timed NAME CMD...: runs CMD, sets T_<NAME> (wall seconds), CPU_<NAME>
# (user + system seconds) and RSS_<NAME> (peak resident MiB), the last two "?"
# without GNU time; CMD's stdout goes to $WORK/NAME.out. On a shared machine
# CPU time is the steadier figure: wall time grows with the other load.
run_timed() {
    local name=$1; shift
    local t0 t1 rss="?" cpu="?"
    t0=$(now)
    if [ -x /usr/bin/time ] && /usr/bin/time -v true >/dev/null 2>&1; then
        /usr/bin/time -v -o "$WORK/$name.time" "$@" >"$WORK/$name.out"
        rss=$(awk -F': ' '/Maximum resident set size/ { printf "%.0f", $2 / 1024 }' "$WORK/$name.time")
        cpu=$(awk -F': ' '/(User|System) time \(seconds\)/ { s += $2 } END { printf "%.2f", s }' "$WORK/$name.time")
    else
        "$@" >"$WORK/$name.out"
    fi
    t1=$(now)
    printf -v "T_$name" '%s' "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')"
    printf -v "RSS_$name" '%s' "$rss"
    printf -v "CPU_$name" '%s' "$cpu"
}

echo "== machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')),"\
     "load average $(cut -d' ' -f1-3 /proc/loadavg), OPENBLAS_NUM_THREADS=$OPENBLAS_NUM_THREADS"

if [ -f "$MODEL/config.json" ] && { [ -f "$MODEL/model.safetensors" ] || [ -f "$MODEL/model.safetensors.index.json" ]; }; then
    echo "== reusing checkpoint $MODEL"
else
    echo "== generating checkpoint in $MODEL"
    # shellcheck disable=SC2086
    run_timed gen "$GEN" --out "$MODEL" ${QF_FULLSIZE_GEN_ARGS:-}
    echo "   generated in ${T_gen} s"
fi
du -sh "$MODEL"

echo "== qformer info --model $MODEL"
run_timed info "$QF_BIN" info --model "$MODEL"
cat "$WORK/info.out"

echo "== qformer embed: 1 image + 1 text"
run_timed embed1 "$QF_BIN" embed --model "$MODEL" --image "$IMG" --text "a photo" --out "$WORK/x1.safetensors"
echo "== qformer embed: 3 images + 1 text"
run_timed embed3 "$QF_BIN" embed --model "$MODEL" --image "$IMG" --image "$IMG" --image "$IMG" \
    --text "a photo" --out "$WORK/x3.safetensors"

# The outputs must have the full-size shapes, finite values, identical rows
# for identical images, and the fingerprint `info` reports.
python3 - "$WORK/info.out" "$WORK/x1.safetensors" "$WORK/x3.safetensors" <<'PY'
import json, math, re, struct, sys
text = open(sys.argv[1]).read()
fingerprint = re.search(r"^fingerprint\s+(\S+)$", text, re.M).group(1)
Q = int(re.search(r"^qformer .* (\d+) queries", text, re.M).group(1))
E = int(re.search(r"^itc dim\s+(\d+)$", text, re.M).group(1))
def read(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    def get(name):
        t = h[name]
        s, e = t["data_offsets"]
        raw = b[8 + n + s:8 + n + e]
        return t["shape"], struct.unpack("<%df" % (len(raw) // 4), raw)
    return h, get
for path, n_img in ((sys.argv[2], 1), (sys.argv[3], 3)):
    h, get = read(path)
    shape, feats = get("image_feats")
    assert shape == [n_img, Q, E], "%s: image_feats %r" % (path, shape)
    assert all(math.isfinite(v) for v in feats), "%s: non-finite feature" % path
    row = Q * E
    for i in range(1, n_img):
        assert feats[i * row:(i + 1) * row] == feats[:row], "%s: image %d differs from image 0" % (path, i)
    assert h["__metadata__"]["model_fingerprint"] == fingerprint, "fingerprint differs from info"
    print("   %s: image_feats %r, itc %.6f" % (path.rsplit("/", 1)[-1], shape, get("itc_scores")[1][0]))
PY

awk -v t1="$T_embed1" -v t3="$T_embed3" -v ti="$T_info" \
    -v c1="$CPU_embed1" -v c3="$CPU_embed3" -v ci="$CPU_info" \
    -v r1="$RSS_embed1" -v r3="$RSS_embed3" -v ri="$RSS_info" -v la="$(cut -d" " -f1-3 /proc/loadavg)" 'BEGIN {
    per = (t3 - t1) / 2
    printf "== results (OPENBLAS_NUM_THREADS=%s; load average now %s)\n", ENVIRON["OPENBLAS_NUM_THREADS"], la
    printf "                                                 wall s     CPU s   peak RSS MiB\n"
    printf "   qformer info (load + check every tensor):  %9.2f %9s   %s\n", ti, ci, ri
    printf "   embed, 1 image + 1 text:                   %9.2f %9s   %s\n", t1, c1, r1
    printf "   embed, 3 images + 1 text:                  %9.2f %9s   %s\n", t3, c3, r3
    if (c1 != "?") cper = sprintf("%9.2f", (c3 - c1) / 2); else cper = "?"
    if (c1 != "?") cfix = sprintf("%9.2f", c1 - (c3 - c1) / 2); else cfix = "?"
    printf "   per image ((3 images - 1 image) / 2):      %9.2f %9s\n", per, cper
    printf "   load + text + fixed (1 image - per image): %9.2f %9s\n", t1 - per, cfix
}'
