#!/usr/bin/env bash
# Settings that stick to a database have a way back: --pooled stays until
# --no-pooled, --factory until another --factory. Each change rebuilds the
# FAISS file from the stored features (nothing re-embedded), and going back
# gives exactly the results from before. Before: no --no-pooled; a pooled
# database stayed pooled for ever.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export TMPDIR_QF="$tmp"
PYTHONPATH="$here" python3 - <<'PY'
import json, os, random
from qfcheck import *
tmp = os.environ["TMPDIR_QF"]; itm = FIX + "/tiny-blip2-itm"
rng = random.Random(11)
os.makedirs(tmp + "/c")
for i in range(20):
    open(f"{tmp}/c/p{i:02d}.png", "wb").write(make_png(rng.randint(8, 48), rng.randint(8, 48), rng, 2))
db = tmp + "/s.db"
def index(*a):
    r = run("index", "--db", db, "--model", itm, *a, tmp + "/c")
    return r.stdout
def state():
    i = json.loads(run("info", "--db", db, "--format", "json").stdout)
    s = json.loads(run("search", "--db", db, "-k", "5", "--format", "json", "a photo").stdout)
    return i, [(x["id"], x["itc"]) for x in s["results"]]

index()
i0, exact = state()
check(not i0["pooled"] and i0["index_vectors"] == 20 * i0["n_query"], f"exact: {i0}")
out = index("--pooled")
i1, _ = state()
check(i1["pooled"] and i1["index_vectors"] == 20 and "embedded 0 images" in out, f"--pooled: {i1} {out}")
index()                                              # sticks without the flag
check(state()[0]["pooled"], "--pooled sticks to the database")
out = index("--no-pooled")                           # the way back
i2, back = state()
check(not i2["pooled"] and i2["index_vectors"] == 20 * i2["n_query"] and "embedded 0 images" in out,
      f"--no-pooled: {i2} {out}")
check(back == exact, f"back to exact: same results {back} vs {exact}")
check(i2["index_in_sync"], "FAISS file in step after the change")
# the factory: to HNSW and back to Flat
index("--factory", "HNSW16")
check(state()[0]["factory"] == "HNSW16", "factory changed")
index("--factory", "Flat")
i3, flat = state()
check(i3["factory"] == "Flat" and flat == exact, f"back to Flat: {i3['factory']} {flat}")
r = run("index", "--db", db, "--pooled", "--no-pooled", tmp + "/c", check=False)
check(r.returncode == 2 and "exclusive" in r.stderr, f"--pooled --no-pooled: {r.stderr!r}")
done("sticky_settings")
PY
