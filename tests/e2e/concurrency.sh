#!/usr/bin/env bash
# Readers during a write: an indexed corpus of 40 images grows to 299 (4 of
# the first images change, one is deleted) while 8 `qformer search` processes run in a
# loop (text, image, --rerank, --caption, table and HTML), with a 9th reader
# exporting and running `info`. Every search exits 0 with valid JSON and k
# results; a second `qformer index` on the same database is refused with a
# clear message (exit 1) and changes nothing; at the end the database is the
# one a clean run of the final corpus gives.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export TMPDIR_QF="$tmp"
PYTHONPATH="$here" python3 - <<'PY'
import json, os, random, sqlite3, struct, subprocess, threading, time, zlib
import numpy as np
from qfcheck import *
tmp = os.path.realpath(os.environ["TMPDIR_QF"]); itm = FIX + "/tiny-blip2-itm"; opt = FIX + "/tiny-blip2-opt"
corpus = tmp + "/corpus"; rng = random.Random(8)

def png(path, w, h):
    open(path, "wb").write(make_png(w, h, rng))

os.makedirs(corpus + "/a"); os.makedirs(corpus + "/b")
for i in range(40):
    png(f"{corpus}/a/img{i:02d}.png", rng.randint(8, 80), rng.randint(8, 80))
db = tmp + "/x.db"
run("index", "--model", itm, "--db", db, "--quiet", corpus)
# the bigger folder, 4 changed files (pending again during the run) and a
# deleted one whose old content serves as a query: its vectors stay in the
# FAISS file until the run ends and rank first, while its row is gone
for i in range(260):
    png(f"{corpus}/b/new{i:03d}.png", rng.randint(8, 80), rng.randint(8, 80))
for i in (0, 16, 24, 32):
    png(f"{corpus}/a/img{i:02d}.png", 90, 33)
old_img = tmp + "/old08.png"
os.rename(f"{corpus}/a/img08.png", old_img)
query_img = f"{corpus}/a/img01.png"

K = 5
variants = [
    ("text", ["-k", str(K), "--format", "json", "--", "a red square"]),
    ("image", ["-k", str(K), "--format", "json", "--image", query_img]),
    ("rerank", ["-k", str(K), "--rerank", "3", "--format", "json", "--", "two dogs"]),
    ("caption", ["-k", str(K), "--caption", "1", "--caption-model", opt, "--format", "json", "--", "a boat"]),
    ("table", ["-k", str(K), "--", "green"]),
    ("html", ["-k", str(K), "--format", "html", "--out", None, "--", "blue"]),
    ("text2", ["-k", str(K), "--format", "json", "--", "something else"]),
    ("image2", ["-k", str(K), "--format", "json", "--image", old_img]),
]
indexing = threading.Event(); indexing.set()
lock = threading.Lock()
stats = {"searches": 0, "during": 0}
problems = []

def searcher(n, name, args):
    after = 0
    while after < 3:
        if not indexing.is_set(): after += 1
        a = list(args)
        if None in a: a[a.index(None)] = f"{tmp}/g{n}.html"
        was_running = indexing.is_set()
        r = subprocess.run([QF, "search", "--db", db, *a], capture_output=True, text=True)
        bad = None
        if r.returncode != 0:
            bad = f"exit {r.returncode}: {r.stderr.strip()}"
        elif name == "table":
            rows = [l for l in r.stdout.splitlines() if l.strip()[:1].isdigit()]
            if len(rows) != K: bad = f"{len(rows)} table rows: {r.stdout}"
        elif name == "html":
            html = open(f"{tmp}/g{n}.html").read()
            if html.count('class="card"') != K or not html.rstrip().endswith("</html>"): bad = "bad HTML page"
        else:
            try:
                out = json.loads(r.stdout)
                res = out["results"]
                if len(res) != K: bad = f"{len(res)} results, expected {K}"
                elif [x["rank"] for x in res] != list(range(1, K + 1)): bad = "ranks"
                elif not all(x["path"].startswith(corpus + "/a/") or x["path"].startswith(corpus + "/b/") for x in res):
                    bad = "paths outside the corpus"
                elif name == "caption" and not isinstance(res[0]["caption"], str): bad = "no caption"
                elif name == "rerank" and not all(x["itm"] is not None for x in res[:3]): bad = "no itm"
            except (ValueError, KeyError, TypeError) as e:
                bad = f"invalid JSON ({e}): {r.stdout[:200]!r}"
        with lock:
            stats["searches"] += 1
            stats["during"] += was_running
            if bad: problems.append(f"search {name}: {bad}")

def exporter():
    i = 0
    while indexing.is_set() or i < 2:
        out = f"{tmp}/exp{i % 2}"
        r = subprocess.run([QF, "export", "--db", db, "--out", out], capture_output=True, text=True)
        if r.returncode != 0:
            with lock: problems.append(f"export during the run: {r.stderr.strip()}")
        else:
            rows = [json.loads(l) for l in open(out + "/images.jsonl")]
            f = np.load(out + "/image_feats.npy")
            if f.shape[0] != sum(x["status"] == "ok" for x in rows):
                with lock: problems.append("export snapshot: feature rows != ok images")
        r = subprocess.run([QF, "info", "--db", db], capture_output=True, text=True)
        if r.returncode != 0:
            with lock: problems.append(f"info during the run: {r.stderr.strip()}")
        i += 1

def n_rows():
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    n = c.execute("SELECT count(*) FROM images").fetchone()[0]; c.close()
    return n

threads = [threading.Thread(target=searcher, args=(n, *v)) for n, v in enumerate(variants)]
threads.append(threading.Thread(target=exporter))
# --checkpoint 1: many short write transactions, the worst case for readers
ix = subprocess.Popen([QF, "index", "--model", itm, "--db", db, "--quiet", "--checkpoint", "1", "--batch", "2", corpus],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
for t in threads: t.start()
t0 = time.monotonic()
while n_rows() < 299 and time.monotonic() - t0 < 60: time.sleep(0.01)
# a second writer while the first one runs: refused, with the reason
r2 = subprocess.run([QF, "index", "--model", itm, "--db", db, "--quiet", corpus], capture_output=True, text=True)
first_running = ix.poll() is None
check(first_running, "the first index run was still going when the second one was tried")
check(r2.returncode == 1, f"second index run: exit {r2.returncode}")
msg = r2.stderr.strip()
check(len(msg.splitlines()) == 1 and "another `qformer index` is running" in msg and "pid" in msg,
      f"second index run's message: {msg!r}")
check(r2.stdout == "", "the refused run prints no report")
out, err = ix.communicate()
indexing.clear()
for t in threads: t.join()
check(ix.returncode == 0, f"the index run: exit {ix.returncode}: {err}")
check("embedded 264 images, 0 failed (bad input, skipped), 35 unchanged, 1 removed; "
      "the index holds 299 images" in out, "index run report: " + out)
print(f"concurrency: {stats['searches']} searches, {stats['during']} of them during the index run")
check(stats["during"] >= 16, f"searches overlapped the index run ({stats['during']})")
for p in problems[:20]: check(False, p)
check(not problems, f"{len(problems)} reader problem(s)")

# nothing corrupted: integrity, check, and the same content as a clean run
c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
check(c.execute("PRAGMA integrity_check").fetchone()[0] == "ok", "integrity_check")
c.close()
r = run("info", "--db", db, "--check", check=False)
check(r.returncode == 0 and "0 problems" in r.stdout, "info --check: " + r.stdout + r.stderr)
clean = tmp + "/clean.db"
run("index", "--model", itm, "--db", clean, "--quiet", corpus)
def by_path(d, name):
    o = f"{tmp}/{name}"
    run("export", "--db", d, "--out", o)
    f = np.load(o + "/image_feats.npy")
    return {x["path"]: f[x["row"]].tobytes() for x in map(json.loads, open(o + "/images.jsonl"))}
a, b = by_path(db, "e1"), by_path(clean, "e2")
check(len(a) == 299 and a == b, "features by path equal a clean run's")
for q in ("a red square", "blue"):
    x = json.loads(run("search", "--db", db, "-k", "10", "--format", "json", "--", q).stdout)["results"]
    y = json.loads(run("search", "--db", clean, "-k", "10", "--format", "json", "--", q).stdout)["results"]
    check([(e["path"], e["itc"]) for e in x] == [(e["path"], e["itc"]) for e in y], f"search '{q}' as a clean index")
done("concurrency")
PY
