#!/usr/bin/env bash
# Index the fixture images with the tiny retrieval model, search every
# fixture text, and compare with a brute-force computation from
# `qformer embed`: order and itc (max over queries) to 1e-5, --rerank with
# itm = embed --itm's itm_logits[..., 1] and score = itm + itc. Then the
# export, the HTML gallery, image-to-image search and --pooled.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/corpus/sub"
cp "$QF_FIXTURES"/tiny-blip2-itm/inputs/*.png "$tmp/corpus/"
mv "$tmp/corpus/tiny_3x5.png" "$tmp/corpus/sub/"
cp "$QF_FIXTURES"/tiny-blip2-itm/inputs/photo_72x56.jpg "$tmp/corpus/sub/photo"   # no extension: found by magic
echo "not an image" > "$tmp/corpus/notes.txt"                                   # ignored
export TMPDIR_QF="$tmp"
PYTHONPATH="$here" python3 - <<'PY'
import json, os, numpy as np
from qfcheck import *
tmp = os.environ["TMPDIR_QF"]; itm = FIX + "/tiny-blip2-itm"; db = tmp + "/x.db"
r = run("index", "--model", itm, "--db", db, "--quiet", tmp + "/corpus")
check("embedded 6 images" in r.stdout, "6 images indexed: " + r.stdout)
# images in id order = sorted absolute paths
paths = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(os.path.realpath(tmp + "/corpus"))
               for f in fs if f != "notes.txt")
texts = json.load(open(itm + "/inputs/texts.json"))
args = ["embed", "--model", itm, "--itm", "--out", tmp + "/ref.safetensors"]
for p in paths: args += ["--image", p]
for t in texts: args += ["--text", t]
run(*args)
ref = read_safetensors(tmp + "/ref.safetensors")
itc, itm_l = ref["itc_scores"], ref["itm_logits"]
for t, text in enumerate(texts):
    if not text.strip():                           # an empty query is a usage error (exit 2)
        r = run("search", "--db", db, "--", text, check=False)
        check(r.returncode == 2 and "empty" in r.stderr, f"text {t}: empty query refused: {r.stderr!r}")
        continue
    out = json.loads(run("search", "--db", db, "-k", "6", "--format", "json", "--", text).stdout)
    check(out["query"] == text, "query echoed")
    got = [(x["path"], x["itc"]) for x in out["results"]]
    want = sorted(((paths[i], float(itc[i, t])) for i in range(len(paths))), key=lambda x: (-x[1], x[0]))
    check(len(got) == 6, f"text {t}: 6 results")
    check([g[0] for g in got] == [w[0] for w in want], f"text {t}: order {got} vs {want}")
    check(all(abs(g[1] - w[1]) <= 1e-5 for g, w in zip(got, want)), f"text {t}: itc values")
    check(all(x["itm"] is None and x["caption"] is None and x["score"] == x["itc"] for x in out["results"]),
          f"text {t}: no rerank fields")
    check([x["rank"] for x in out["results"]] == list(range(1, 7)), "ranks 1..6")
    # rerank the top 4: itm = itm_logits[..., 1], score = itm + itc, ordered by score
    out = json.loads(run("search", "--db", db, "-k", "6", "--rerank", "4", "--format", "json", "--", text).stdout)
    res = out["results"]
    top4 = res[:4]
    check(all(x["itm"] is not None for x in top4) and all(x["itm"] is None for x in res[4:]), f"text {t}: rerank 4")
    for x in top4:
        i = paths.index(x["path"])
        check(abs(x["itm"] - float(itm_l[i, t, 1])) <= 1e-5, f"text {t}: itm of {x['path']}")
        check(abs(x["score"] - (x["itm"] + x["itc"])) <= 1e-5, "score = itm + itc")
    check([x["score"] for x in top4] == sorted([x["score"] for x in top4], reverse=True), "rerank order")
    check({x["path"] for x in top4} == {w[0] for w in want[:4]}, "rerank keeps the ITC top 4")
# -k smaller than the corpus, table format
r = run("search", "--db", db, "-k", "2", "--", texts[0])
check(len([l for l in r.stdout.splitlines() if l.strip()[:1].isdigit()]) == 2, "table with 2 rows:\n" + r.stdout)
# export = embed's image_feats, rows in id order
run("export", "--db", db, "--out", tmp + "/exp")
feats = np.load(tmp + "/exp/image_feats.npy"); ids = np.load(tmp + "/exp/image_ids.npy")
rows = [json.loads(l) for l in open(tmp + "/exp/images.jsonl")]
check(feats.dtype == np.float32 and feats.shape == ref["image_feats"].shape, f"export shape {feats.shape}")
check(np.array_equal(feats, ref["image_feats"]), "exported features equal embed's bit for bit")
check(ids.dtype == np.int64 and list(ids) == sorted(ids) and len(ids) == 6, "ids int64 ascending")
check([r["path"] for r in rows] == paths and all(r["status"] == "ok" for r in rows), "images.jsonl")
check(all(r["width"] > 0 and r["height"] > 0 for r in rows), "sizes recorded")
# image-to-image: the query image itself comes first with score ~1 (its own query vectors)
out = json.loads(run("search", "--db", db, "-k", "3", "--format", "json", "--image", paths[0]).stdout)
check(out["results"][0]["path"] == paths[0], "image query finds itself first")
f0 = ref["image_feats"]
for x in out["results"]:
    i = paths.index(x["path"])
    check(abs(x["itc"] - float((f0[0] @ f0[i].T).max())) <= 1e-5, "image-image score = max over pairs")
# HTML gallery: self-contained, one card per result, thumbnails inline
run("search", "--db", db, "-k", "5", "--format", "html", "--out", tmp + "/g.html", "--", texts[1])
html = open(tmp + "/g.html").read()
check(html.count('class="card"') == 5 and html.count("data:image/jpeg;base64,") == 5, "html cards")
# pooled index: approximate candidates, exact itc reported
dbp = tmp + "/p.db"
run("index", "--model", itm, "--db", dbp, "--pooled", "--quiet", tmp + "/corpus")
out = json.loads(run("search", "--db", dbp, "-k", "6", "--format", "json", "--", texts[0]).stdout)
check("approximate" in out.get("mode", ""), "pooled labelled approximate")
check(all(abs(x["itc"] - float(itc[paths.index(x["path"]), 0])) <= 1e-5 for x in out["results"]), "pooled: exact itc")
# --keep-vision: rerank reads the F16 vision cache (said in the output); ITM within F16 error
dbv = tmp + "/v.db"
run("index", "--model", itm, "--db", dbv, "--keep-vision", "--quiet", tmp + "/corpus")
out = json.loads(run("search", "--db", dbv, "-k", "6", "--rerank", "6", "--format", "json", "--", texts[0]).stdout)
check("cached" in out.get("rerank_vision", ""), "rerank from the vision cache: " + out.get("rerank_vision", ""))
for x in out["results"]:
    i = paths.index(x["path"])
    check(abs(x["itm"] - float(itm_l[i, 0, 1])) <= 2e-2, f"cached-vision itm of {x['path']}: {x['itm']} vs {itm_l[i, 0, 1]}")
# info --db
r = run("info", "--db", db)
check("6" in r.stdout and "Flat" in r.stdout, "info --db:\n" + r.stdout)
done("index_search")
PY
