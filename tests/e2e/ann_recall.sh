#!/usr/bin/env bash
# Approximate indexes return the exact top k (issue 15), on real images, the
# tiny retrieval model, a real SQLite store and real FAISS files:
# - `--factory auto` (the default) picks Flat for a small corpus and says why;
#   with a tiny --max-index-memory it picks an IVF index; both kept in `info`.
# - an IVF-PQ index is tuned at the end of the run (nprobe + candidates,
#   recorded with the recall they measured) and `search` at its defaults
#   returns the exact ranking: the top 10 of every fixture text equals the
#   brute force from `export` + `embed --text`, with exact itc values.
# - `info --recall [--queries FILE]` reports recall@10 and latency; search
#   --candidates / --nprobe override; bad values are usage errors.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export TMPDIR_QF="$tmp"
PYTHONPATH="$here" python3 - <<'PY'
import json, os, random, numpy as np
from qfcheck import *
tmp = os.environ["TMPDIR_QF"]; itm = FIX + "/tiny-blip2-itm"
corpus = tmp + "/corpus"; os.makedirs(corpus)
for i in range(60):
    open(f"{corpus}/p{i:02d}.png", "wb").write(make_png(12 + i % 17, 10 + i % 13, random.Random(i)))

# auto, small corpus: Flat (exact), the reason printed and kept
r = run("index", "--model", itm, "--db", tmp + "/auto.db", "--quiet", corpus)
check("vector index: Flat (auto: 480 vectors: exact Flat fits" in r.stdout, "auto -> Flat: " + r.stdout)
info = json.loads(run("info", "--db", tmp + "/auto.db", "--format", "json").stdout)
check(info["factory"] == "Flat" and info["factory_request"] == "auto", f"info: {info['factory']} {info['factory_request']}")
check(info["search"]["exact"] and info["factory_reason"].startswith("480 vectors"), f"info search: {info['search']}")
check("chosen by    --factory auto: 480 vectors" in run("info", "--db", tmp + "/auto.db").stdout, "info text: the choice")
# auto under a tiny memory budget: an IVF index, retuned, same exact results
r = run("index", "--model", itm, "--db", tmp + "/auto.db", "--max-index-memory", "8K", "--quiet", corpus)
info = json.loads(run("info", "--db", tmp + "/auto.db", "--format", "json").stdout)
check(info["factory"].startswith("IVF16,") and "over budget" in info["factory_reason"], f"budget 8K: {info['factory']}: {info['factory_reason']}")
check(info["search"]["candidates"] > 0 and info["search"]["tuned_recall"] >= 0.97, f"budget 8K: tuned {info['search']}")
r = run("index", "--model", itm, "--db", tmp + "/x.db", "--max-index-memory", "lots", corpus, check=False)
check(r.returncode == 2 and "'lots' is not a size" in r.stderr, f"bad --max-index-memory: {r.returncode} {r.stderr}")

# explicit IVF-PQ: tuned at the end of the run
db = tmp + "/pq.db"
r = run("index", "--model", itm, "--db", db, "--factory", "IVF4,PQ4x4", "--quiet", corpus)
check("search settings (tuned): nprobe" in r.stdout, "tuning reported: " + r.stdout)
info = json.loads(run("info", "--db", db, "--format", "json").stdout)
s = info["search"]
check(not s["exact"] and 1 <= s["nprobe"] <= 4 and 10 <= s["candidates"] <= 60, f"tuned settings {s}")
check(s["tuned_recall"] >= 0.97 and s["tuned_images"] == 60 and s["tuned_probes"] == 60, f"tuned recall {s}")
check(f"search       nprobe {s['nprobe']}, {s['candidates']} candidates" in run("info", "--db", db).stdout, "info text: settings")

# search at the defaults = brute force over the exported features
run("export", "--db", db, "--out", tmp + "/ex")
feats = np.load(tmp + "/ex/image_feats.npy"); paths = [json.loads(l)["path"] for l in open(tmp + "/ex/images.jsonl")]
texts = [t for t in json.load(open(itm + "/inputs/texts.json")) if t.strip()]
args = ["embed", "--model", itm, "--out", tmp + "/t.safetensors"]
for t in texts: args += ["--text", t]
run(*args)
tf = read_safetensors(tmp + "/t.safetensors")["text_feats"]
hit = total = 0
for j, t in enumerate(texts):
    itc = (feats @ tf[j]).max(axis=1)
    want = sorted(range(len(paths)), key=lambda i: (-itc[i], paths[i]))[:10]
    out = json.loads(run("search", "--db", db, "--format", "json", "--", t).stdout)["results"]
    check(len(out) == 10, f"text {j}: 10 results")
    got = [paths.index(x["path"]) for x in out]
    hit += len(set(got) & set(want)); total += 10
    check(all(abs(x["itc"] - float(itc[g])) <= 1e-5 for x, g in zip(out, got)), f"text {j}: exact itc values")
    check([x["itc"] for x in out] == sorted((x["itc"] for x in out), reverse=True), f"text {j}: ordered by itc")
check(hit / total >= 0.95, f"recall@10 at default settings {hit / total:.3f} >= 0.95")
# the overrides: one candidate per query returns what FAISS ranks first, still exactly scored
out = json.loads(run("search", "--db", db, "--format", "json", "--candidates", "1", "--nprobe", "1", "-k", "3", "--", texts[0]).stdout)["results"]
check(1 <= len(out) <= 3, f"--candidates 1: {len(out)} results")
r = run("search", "--db", db, "--candidates", "0", "x", check=False)
check(r.returncode == 2 and "--candidates" in r.stderr, f"--candidates 0: usage error {r.returncode} {r.stderr}")

# info --recall on the fixture texts and on probe vectors
lines = [t.replace("\n", " ") for t in texts]
open(tmp + "/q.txt", "w").write("\n".join(lines) + "\n\n")      # the blank line is skipped
rj = json.loads(run("info", "--db", db, "--recall", "--queries", tmp + "/q.txt", "--format", "json").stdout)
check(rj["source"] == "text queries" and rj["queries"] == len(lines) and rj["recall"] >= 0.95, f"info --recall texts: {rj}")
check(rj["nprobe"] == s["nprobe"] and rj["candidates"] == s["candidates"] and rj["search_ms_p95"] >= rj["search_ms_p50"] > 0, f"info --recall settings: {rj}")
rt = run("info", "--db", db, "--recall").stdout
check(rt.startswith("recall@10 ") and "probe vectors" in rt and "p95" in rt, "info --recall text: " + rt)
rf = json.loads(run("info", "--db", tmp + "/auto.db", "--recall", "--format", "json").stdout)
check(rf["recall"] >= 0.95, f"info --recall on the auto (IVF) db: {rf}")
r = run("info", "--db", db, "--recall", "--queries", tmp + "/missing.txt", check=False)
check(r.returncode == 1 and "missing.txt" in r.stderr, f"missing queries file: {r.returncode} {r.stderr}")
r = run("info", "--model", itm, "--recall", check=False)
check(r.returncode == 2, f"--recall without --db: {r.returncode}")
# a trained index is retrained from the stored features once the corpus grows 4x past its training size
grow = tmp + "/grow"; os.makedirs(grow)
import shutil
for i in range(10): shutil.copy(f"{corpus}/p{i:02d}.png", grow)
run("index", "--model", itm, "--db", tmp + "/g.db", "--factory", "IVF2,PQ4x4", "--quiet", grow)
for i in range(10, 30): shutil.copy(f"{corpus}/p{i:02d}.png", grow)
r = run("--verbose", "index", "--model", itm, "--db", tmp + "/g.db", grow)
check("retraining" not in r.stderr, "30 images (3x the 10 trained at): no retraining")
for i in range(30, 60): shutil.copy(f"{corpus}/p{i:02d}.png", grow)
r = run("--verbose", "index", "--model", itm, "--db", tmp + "/g.db", grow)
check("was trained at 80 vectors, the corpus now has 480: retraining it" in r.stderr, "60 images (6x): retrained: " + r.stderr[-600:])
check("training IVF2,PQ4x4 on" in r.stderr, "retrained: training ran again")
g = json.loads(run("info", "--db", tmp + "/g.db", "--format", "json").stdout)
check(g["index_vectors"] == 480 and g["search"]["tuned_images"] == 60, f"after retraining: {g['index_vectors']} vectors, tuned at {g['search']['tuned_images']}")
done("ann_recall")
PY
