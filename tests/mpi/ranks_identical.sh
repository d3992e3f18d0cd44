#!/usr/bin/env bash
# `mpirun -np 1/2/3 qformer index` over the same corpus of a few dozen
# images give identical exports: same ids, same paths, bit-identical vectors.
# Then a SIGKILL of the whole job, and a re-run that completes it.
set -euo pipefail
here=$(cd "$(dirname "$0")/../e2e" && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export TMPDIR_QF="$tmp"
PYTHONPATH="$here" python3 - <<'PY'
import json, os, shutil, signal, subprocess, time, zlib, struct, random
import numpy as np
from qfcheck import *
tmp = os.environ["TMPDIR_QF"]; itm = FIX + "/tiny-blip2-itm"
corpus = tmp + "/corpus"; os.makedirs(corpus + "/b")
def png(path, w, h, seed):
    open(path, "wb").write(make_png(w, h, random.Random(seed)))
for i in range(36):
    png(f"{corpus}/{'b/' if i % 3 == 0 else ''}p{i:02d}.png", 16 + i, 24 + (i % 5), i)
for f in os.listdir(FIX + "/tiny-blip2-itm/inputs"):
    if f.endswith((".png", ".jpg")): shutil.copy(FIX + "/tiny-blip2-itm/inputs/" + f, corpus)
open(corpus + "/broken.jpg", "wb").write(b"\xff\xd8\xff\xe0 broken")
MPI = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-x", "OPENBLAS_NUM_THREADS=1", "-x", "OMP_NUM_THREADS=1"]
def index(np_, db, *extra):
    r = subprocess.run(MPI + ["-np", str(np_), QF, "index", "--model", itm, "--db", db, "--quiet",
                              "--batch", "3", "--threads", "1", *extra, corpus], capture_output=True, text=True)
    check(r.returncode == 0, f"np {np_}: exit {r.returncode}: {r.stderr[-2000:]}")
    return r
def export(db, name):
    out = f"{tmp}/{name}"; run("export", "--db", db, "--out", out)
    return (np.load(out + "/image_feats.npy"), np.load(out + "/image_ids.npy"),
            [json.loads(l) for l in open(out + "/images.jsonl")])
ex = {}
for n in (1, 2, 3):
    r = index(n, f"{tmp}/n{n}.db")
    check("1 failed (bad input, skipped)" in r.stdout, f"np {n}: " + r.stdout)
    ex[n] = export(f"{tmp}/n{n}.db", f"e{n}")
for n in (2, 3):
    check(np.array_equal(ex[1][0], ex[n][0]), f"np 1 vs {n}: bit-identical vectors")
    check(np.array_equal(ex[1][1], ex[n][1]), f"np 1 vs {n}: same ids")
    check(ex[1][2] == ex[n][2], f"np 1 vs {n}: same images.jsonl")
check(len(ex[1][1]) == 42 and len(ex[1][2]) == 43, f"42 indexed + 1 bad ({len(ex[1][1])}, {len(ex[1][2])})")
# the whole job killed with SIGKILL, then resumed
for i, delay in enumerate((0.8, 2.0)):
    db = f"{tmp}/kill{i}.db"
    p = subprocess.Popen(MPI + ["-np", "3", QF, "index", "--model", itm, "--db", db, "--quiet", "--batch", "1",
                                "--checkpoint", "2", "--threads", "1", corpus],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(delay); os.killpg(p.pid, signal.SIGKILL); p.wait()
    index(2, db)
    e = export(db, f"k{i}")
    check(np.array_equal(e[0], ex[1][0]) and np.array_equal(e[1], ex[1][1]) and e[2] == ex[1][2],
          f"killed at {delay}s and resumed = clean run")
done("ranks_identical")
PY
