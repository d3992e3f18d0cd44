#!/usr/bin/env bash
# `index --store-dtype f16` keeps the features as half floats: recorded,
# shown by info, export and search read them back within 1e-3 of F32, the
# same ranking on the fixture texts, and a switch on a database holding
# features is refused.
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
# --store-dtype f16 (same corpus as f.db)
os.remove(tmp + "/corpus/new.png")
run("index", "--model", itm, "--db", tmp + "/h.db", "--store-dtype", "f16", "--quiet", tmp + "/corpus")
ih = json.loads(run("info", "--db", tmp + "/h.db", "--format", "json").stdout)
check(ih["store_dtype"] == "f16" and ih["ok"] >= 5, f"info: f16 store {ih['store_dtype']}")
check("features     f16 in SQLite" in run("info", "--db", tmp + "/h.db").stdout, "info text: f16")
check(json.loads(run("info", "--db", tmp + "/f.db", "--format", "json").stdout)["store_dtype"] == "f32", "info: f32 store")
run("export", "--db", tmp + "/h.db", "--out", tmp + "/eh")
h = np.load(tmp + "/eh/image_feats.npy")
check(h.shape == f.shape, f"f16 export shape {h.shape} vs {f.shape}")
dh = float(np.abs(h - f).max()) if h.shape == f.shape else 1.0
check(0 < dh <= 1e-3, f"f16 features within 1e-3 of f32 (max diff {dh})")
for t in json.load(open(itm + "/inputs/texts.json"))[:4]:
    a = json.loads(run("search", "--db", tmp + "/f.db", "--format", "json", "-k", "5", "--", t).stdout)["results"]
    b = json.loads(run("search", "--db", tmp + "/h.db", "--format", "json", "-k", "5", "--", t).stdout)["results"]
    check([x["path"] for x in a] == [x["path"] for x in b], f"'{t}': same ranking with f16 features")
    check(all(abs(x["itc"] - y["itc"]) <= 1e-3 for x, y in zip(a, b)), f"'{t}': itc within 1e-3")
r = run("index", "--model", itm, "--db", tmp + "/h.db", "--store-dtype", "f32", "--quiet", tmp + "/corpus", check=False)
check(r.returncode == 1 and "stores its features as f16" in r.stderr, f"switching f16 -> f32 refused: {r.stderr.strip()}")
r = run("index", "--model", itm, "--db", tmp + "/h.db", "--quiet", tmp + "/corpus")
check(json.loads(run("info", "--db", tmp + "/h.db", "--format", "json").stdout)["store_dtype"] == "f16", "a plain re-run keeps f16")
r = run("index", "--model", itm, "--db", tmp + "/y.db", "--store-dtype", "f8", tmp + "/corpus", check=False)
check(r.returncode == 2 and "--store-dtype must be f32 or f16" in r.stderr, "bad --store-dtype: usage error")
done("index_dtype")
PY
