#!/usr/bin/env bash
# Incremental re-runs, bad input and kill -9: after adding, modifying and
# deleting files, and after SIGKILL at several points of a run, a re-run
# gives the same export as a clean run of the final corpus, with no
# duplicates and SQLite's integrity check ok.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export TMPDIR_QF="$tmp"
PYTHONPATH="$here" python3 - <<'PY'
import json, os, shutil, signal, sqlite3, subprocess, time, zlib, struct, random
import numpy as np
from qfcheck import *
tmp = os.environ["TMPDIR_QF"]; itm = FIX + "/tiny-blip2-itm"; src = itm + "/inputs"
corpus = tmp + "/corpus"; os.makedirs(corpus)

def png(path, w, h, seed):
    open(path, "wb").write(make_png(w, h, random.Random(seed)))

for i in range(24):
    png(f"{corpus}/img{i:02d}.png", 20 + i, 30, i)
shutil.copy(src + "/photo_72x56.jpg", corpus + "/photo.jpg")

def export(db, name):
    out = f"{tmp}/{name}"
    run("export", "--db", db, "--out", out)
    rows = [json.loads(l) for l in open(out + "/images.jsonl")]
    return np.load(out + "/image_feats.npy"), np.load(out + "/image_ids.npy"), rows

def same(a, b, what, by_path=False):
    fa, ia, ra = a; fb, ib, rb = b
    if by_path:   # incremental runs append new ids: compare path -> features
        ka = {r["path"]: fa[r["row"]] for r in ra if r["row"] is not None}
        kb = {r["path"]: fb[r["row"]] for r in rb if r["row"] is not None}
        check(ka.keys() == kb.keys() and all(np.array_equal(ka[p], kb[p]) for p in ka), what + ": features by path")
        check(sorted(r["path"] for r in ra) == sorted(r["path"] for r in rb), what + ": paths")
        check(len(set(ia.tolist())) == len(ia), what + ": no duplicate ids")
        return
    check(np.array_equal(ia, ib), what + ": ids")
    check(np.array_equal(fa, fb), what + ": features")
    check([r["path"] for r in ra] == [r["path"] for r in rb], what + ": paths")
    check(len(set(ia.tolist())) == len(ia), what + ": no duplicate ids")
    check([r["status"] for r in ra] == [r["status"] for r in rb], what + ": statuses")

def integrity(db):
    c = sqlite3.connect(db); ok = c.execute("PRAGMA integrity_check").fetchone()[0]; c.close()
    check(ok == "ok", f"integrity_check: {ok}")

def index(db, *extra):
    return run("index", "--model", itm, "--db", db, "--quiet", "--checkpoint", "4", *extra, corpus)

# --- bad input: recorded, skipped, exit 0 ---------------------------------
data = open(src + "/photo_72x56.jpg", "rb").read()
open(corpus + "/truncated.jpg", "wb").write(data[: len(data) // 2])
open(corpus + "/empty.jpg", "wb").write(b"")
open(corpus + "/random.png", "wb").write(bytes(random.Random(7).randrange(256) for _ in range(500)))
open(corpus + "/text.png", "w").write("hello, I am text\n")
open(corpus + "/bomb.png", "wb").write(png_file(100000, 100000))   # header claims 10 Gpixels
db = tmp + "/a.db"
r = index(db)
check("5 failed (bad input, skipped)" in r.stdout, "5 bad files reported: " + r.stdout)
check("the index holds 25 images" in r.stdout, "25 good images: " + r.stdout)
c = sqlite3.connect(db)
errs = dict(c.execute("SELECT path, error FROM images WHERE status = 'error'").fetchall()); c.close()
check(len(errs) == 5, f"5 errors recorded: {errs}")
for name, word in (("truncated.jpg", "truncat"), ("bomb.png", "bomb"), ("empty.jpg", ""), ("text.png", ""), ("random.png", "")):
    e = [v for k, v in errs.items() if k.endswith("/" + name)]
    check(len(e) == 1 and name in e[0] and word in e[0].lower(), f"{name}: {e}")
r = run("info", "--db", db, "--failures")
check("bomb.png" in r.stdout and "truncated.jpg" in r.stdout, "info --failures lists them")
# second run: nothing to do
r = index(db)
check("embedded 0 images" in r.stdout and "30 unchanged" in r.stdout, "re-run skips everything: " + r.stdout)
for n in ("truncated.jpg", "empty.jpg", "random.png", "text.png", "bomb.png"):
    os.remove(f"{corpus}/{n}")

# --- add, modify, delete ----------------------------------------------------
index(db)
png(corpus + "/new.png", 33, 17, 99)
png(corpus + "/img03.png", 40, 40, 1234)          # modified content and size
os.remove(corpus + "/img07.png")
r = index(db)
check("embedded 2 images" in r.stdout and "1 removed" in r.stdout, "incremental counts: " + r.stdout)
clean = tmp + "/clean.db"
index(clean)
same(export(db, "inc"), export(clean, "clean"), "incremental = clean", by_path=True)
integrity(db)

# --- kill -9 at several points, then resume ------------------------------
for i, delay in enumerate((0.15, 0.4, 0.8, 1.5)):
    dbk = f"{tmp}/k{i}.db"
    p = subprocess.Popen([QF, "index", "--model", itm, "--db", dbk, "--quiet", "--checkpoint", "2",
                          "--batch", "1", corpus], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay); p.send_signal(signal.SIGKILL); p.wait()
    index(dbk)
    same(export(dbk, f"k{i}"), export(clean, "clean"), f"kill after {delay}s")
    integrity(dbk)
    r = index(dbk)
    check("embedded 0 images" in r.stdout, "nothing left after resume: " + r.stdout)
done("incremental")
PY
