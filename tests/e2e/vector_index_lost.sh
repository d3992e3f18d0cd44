#!/usr/bin/env bash
# The FAISS file beside the database deleted, truncated or overwritten:
# `search` answers exactly from the features stored in SQLite (same ids and
# scores) and warns that the vector index is missing or unreadable and what
# rebuilds it; a plain re-run of `qformer index` rebuilds it (no `info
# --repair` first), after which search is quiet again and `info --check`
# passes. Before: a missing file gave "(no results)" and exit 0, a corrupt
# one failed every search and was never repaired by a re-run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export TMPDIR_QF="$tmp"
PYTHONPATH="$here" python3 - <<'PY'
import json, os, random, re
from qfcheck import *
tmp = os.environ["TMPDIR_QF"]; itm = FIX + "/tiny-blip2-itm"
rng = random.Random(2)
os.makedirs(tmp + "/c")
for i in range(16):
    open(f"{tmp}/c/p{i:02d}.png", "wb").write(make_png(rng.randint(8, 48), rng.randint(8, 48), rng, 2))
db = tmp + "/v.db"; faiss = db + ".faiss"
index = lambda: run("index", "--model", itm, "--db", db, "--quiet", tmp + "/c")
index()

def search(*a):
    r = run("search", "--db", db, "--format", "json", *a, "a blue sky", check=False)
    check(r.returncode == 0, f"search {a}: exit {r.returncode}: {r.stderr}")
    return (json.loads(r.stdout)["results"] if r.returncode == 0 else None), r.stderr

ref, err = search("-k", "5")
ref_rr, _ = search("-k", "3", "--rerank", "6")
check(len(ref) == 5 and err == "", f"reference search: {len(ref)} results, stderr {err!r}")

def damaged(what, expect):
    got, err = search("-k", "5")
    check(got == ref, f"{what}: results from the store {got} != with FAISS {ref}")
    check(expect in err and "qformer index" in err, f"{what}: warning names the problem and the fix: {err!r}")
    got_rr, _ = search("-k", "3", "--rerank", "6")
    check(got_rr == ref_rr, f"{what}: reranked results from the store")
    txt = run("info", "--db", db).stdout           # never "vectors -1"
    check(("not written yet" in txt or "is unreadable" in txt) and "qformer index" in txt,
          f"{what}: info says what is wrong with the vector index: {txt}")
    r = index()                                    # the plain re-run repairs it
    check(os.path.exists(faiss), f"{what}: re-run wrote {faiss}")
    got, err = search("-k", "5")
    check(got == ref and err == "", f"{what}: after the re-run: {got}, stderr {err!r}")
    c = run("info", "--db", db, "--check", check=False)
    check(c.returncode == 0, f"{what}: info --check after the re-run: {c.stdout} {c.stderr}")

os.remove(faiss)
damaged("deleted", "vector index is missing")
size = os.path.getsize(faiss)
with open(faiss, "r+b") as f: f.truncate(size // 2)
damaged("truncated", "not a readable FAISS index")
open(faiss, "wb").write(rng.randbytes(300))
damaged("overwritten", "not a readable FAISS index")
# overwritten with garbage of the very same size: search still falls back
# (FAISS cannot read it) and says what to run
open(faiss, "wb").write(rng.randbytes(size))
got, err = search("-k", "5")
check(got == ref and "re-run `qformer index" in err, f"same-size garbage: {err!r}")
done("vector_index_lost")
PY
