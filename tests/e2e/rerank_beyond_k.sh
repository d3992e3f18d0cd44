#!/usr/bin/env bash
# search --rerank N with N > k: the top N by ITC are rescored with ITM and
# the best k by score printed, so `-k 3 --rerank 12` is exactly the first 3
# of `-k 12 --rerank 12` (it reranked only the first k before, and the best
# ITM match among the 12 never showed).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export TMPDIR_QF="$tmp"
PYTHONPATH="$here" python3 - <<'PY'
import json, os, random
from qfcheck import *
tmp = os.environ["TMPDIR_QF"]; itm = FIX + "/tiny-blip2-itm"
rng = random.Random(14)
os.makedirs(tmp + "/c")
for i in range(30):
    open(f"{tmp}/c/p{i:02d}.png", "wb").write(make_png(rng.randint(8, 64), rng.randint(8, 64), rng, 2))
db = tmp + "/r.db"
run("index", "--model", itm, "--db", db, "--quiet", tmp + "/c")

def search(*a):
    return json.loads(run("search", "--db", db, "--format", "json", *a, "a red square").stdout)["results"]

ids = lambda rs: [r["id"] for r in rs]
for n in (12, 24):
    full = search("-k", str(n), "--rerank", str(n))
    top3 = search("-k", "3", "--rerank", str(n))
    check(len(top3) == 3, f"-k 3 --rerank {n}: {len(top3)} results")
    check(ids(top3) == ids(full[:3]), f"-k 3 --rerank {n} {ids(top3)} != first 3 of -k {n} --rerank {n} {ids(full[:3])}")
    check([r["score"] for r in top3] == [r["score"] for r in full[:3]], f"--rerank {n}: same scores")
    check(all(r["itm"] is not None for r in top3), f"--rerank {n}: all printed results reranked")
    check(top3 == sorted(top3, key=lambda r: -r["score"]), f"--rerank {n}: ordered by score")
    # the case that failed: the best by score was not among the top 3 by ITC
    by_itc = ids(search("-k", "3"))
    check(any(i not in by_itc for i in ids(top3)), f"--rerank {n}: the corpus shows the difference ({ids(top3)} vs ITC {by_itc})")
# N < k: the reranked N first by score, the rest by ITC
mix = search("-k", "6", "--rerank", "2")
check([r["itm"] is not None for r in mix] == [True, True, False, False, False, False], "N < k: the first N reranked")
done("rerank_beyond_k")
PY
