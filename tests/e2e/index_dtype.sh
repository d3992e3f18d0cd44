#!/usr/bin/env bash
# `index --dtype bf16` runs the ViT in BF16 (features within a few 1e-3 of
# F32, not identical), is recorded in the database and shown by `info`, and a
# run with the other dtype on a database holding features is refused with a
# message (F32 and BF16 features are never mixed in one index).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/corpus"; cp "$QF_FIXTURES"/tiny-blip2-itm/inputs/*.png "$tmp/corpus/"
export TMPDIR_QF="$tmp"
PYTHONPATH="$here" python3 - <<'PY'
import json, os, numpy as np
from qfcheck import *
tmp = os.environ["TMPDIR_QF"]; itm = FIX + "/tiny-blip2-itm"
run("index", "--model", itm, "--db", tmp + "/f.db", "--quiet", tmp + "/corpus")
run("index", "--model", itm, "--db", tmp + "/b.db", "--dtype", "bf16", "--quiet", tmp + "/corpus")
check(json.loads(run("info", "--db", tmp + "/b.db", "--format", "json").stdout)["vision_dtype"] == "bf16", "info: bf16 recorded")
check(json.loads(run("info", "--db", tmp + "/f.db", "--format", "json").stdout)["vision_dtype"] == "f32", "info: f32 recorded")
check("ViT dtype    bf16" in run("info", "--db", tmp + "/b.db").stdout, "info text: bf16")
run("export", "--db", tmp + "/f.db", "--out", tmp + "/ef"); run("export", "--db", tmp + "/b.db", "--out", tmp + "/eb")
f, b = np.load(tmp + "/ef/image_feats.npy"), np.load(tmp + "/eb/image_feats.npy")
d = float(np.abs(f - b).max())
check(f.shape == b.shape and 0 < d <= 1e-2, f"bf16 features within 1e-2 of f32 and not identical (max diff {d})")
for db, other in ((tmp + "/b.db", "f32"), (tmp + "/f.db", "bf16")):
    open(tmp + "/corpus/new.png", "wb").write(open(itm + "/inputs/rgb_80x52.png", "rb").read()[:-1] + b"\0")
    r = run("index", "--model", itm, "--db", db, "--dtype", other, "--quiet", tmp + "/corpus", check=False)
    check(r.returncode == 1 and "would mix" in r.stderr and os.path.basename(db) in r.stderr,
          f"{db} with --dtype {other}: refused ({r.returncode}: {r.stderr.strip()})")
r = run("index", "--model", itm, "--db", tmp + "/b.db", "--dtype", "bf16", "--quiet", tmp + "/corpus")
check("the index holds" in r.stdout, "same dtype again: runs")
r = run("index", "--model", itm, "--db", tmp + "/x.db", "--dtype", "f16", tmp + "/corpus", check=False)
check(r.returncode == 2 and "--dtype must be f32 or bf16" in r.stderr, "bad --dtype: usage error")
done("index_dtype")
PY
