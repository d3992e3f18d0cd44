#!/usr/bin/env bash
# SIGINT / SIGTERM to rank 0 of `mpirun -np 3 qformer index`: rank 0 stops
# handing out work and sends every worker TAG_STOP as its batch comes in; the
# job ends with exit 130 and "interrupted: N images saved", the N committed
# images are in the FAISS file, and the same command resumes to a complete
# index equal to a run without interruption. Signalled once images are
# committed (polled read-only), so load on the machine does not matter.
set -euo pipefail
here=$(cd "$(dirname "$0")/../e2e" && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export TMPDIR_QF="$tmp"
PYTHONPATH="$here" python3 - <<'PY'
import json, os, random, re, signal, sqlite3, subprocess, time
import numpy as np
from qfcheck import *
tmp = os.environ["TMPDIR_QF"]; itm = FIX + "/tiny-blip2-itm"
rng = random.Random(30)
N = 300
os.makedirs(tmp + "/c")
for i in range(N):
    open(f"{tmp}/c/p{i:03d}.png", "wb").write(make_png(rng.randint(64, 128), rng.randint(64, 128), rng, 2))
MPI = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-x", "OPENBLAS_NUM_THREADS=1", "-x", "OMP_NUM_THREADS=1"]

def committed(db):
    try:
        c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        n = c.execute("SELECT count(*) FROM images WHERE status != 'pending'").fetchone()[0]; c.close()
        return n
    except sqlite3.Error:
        return 0

def rank0(mpirun_pid):
    """pid of the rank-0 process among mpirun's descendants"""
    for p in os.listdir("/proc"):
        if not p.isdigit(): continue
        try:
            env = open(f"/proc/{p}/environ", "rb").read().split(b"\0")
            cmd = open(f"/proc/{p}/cmdline", "rb").read()
        except OSError:
            continue
        if b"OMPI_COMM_WORLD_RANK=0" in env and cmd.startswith(QF.encode()):
            return int(p)
    return None

def export(db, name):
    out = f"{tmp}/{name}"; run("export", "--db", db, "--out", out)
    return np.load(out + "/image_feats.npy"), np.load(out + "/image_ids.npy")

cmd = lambda db: MPI + ["-np", "3", QF, "index", "--model", itm, "--db", db, "--batch", "2", "--checkpoint", "4",
                        "--threads", "1", tmp + "/c"]
for name, sig in (("int", signal.SIGINT), ("term", signal.SIGTERM)):
    db = f"{tmp}/{name}.db"
    p = subprocess.Popen(cmd(db), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    while committed(db) < 8 and p.poll() is None and time.monotonic() - t0 < 300: time.sleep(0.005)
    pid = rank0(p.pid)
    check(p.poll() is None and pid is not None, f"{name}: job running, rank 0 found ({pid})")
    if pid: os.kill(pid, sig)
    out, err = p.communicate(timeout=300)
    check(p.returncode == 130, f"{name}: mpirun exit {p.returncode}: {err[-1500:]!r}")
    m = re.search(r"interrupted: (\d+) images saved; re-run the same command to resume", err)
    check(bool(m), f"{name}: message: {err[-1500:]!r}")
    saved = int(m.group(1)) if m else -1
    check(saved == committed(db) and 8 <= saved < N, f"{name}: {saved} saved, {committed(db)} committed of {N}")
    info = json.loads(run("info", "--db", db, "--format", "json").stdout)
    check(info["index_vectors"] == info["ok"] * info["n_query"], f"{name}: FAISS in step: {info}")
    check(run("info", "--db", db, "--check", check=False).returncode == 0, f"{name}: info --check")
    r = subprocess.run(cmd(db), capture_output=True, text=True)
    check(r.returncode == 0 and f"the index holds {N} images" in r.stdout, f"{name}: resumed: {r.stdout} {r.stderr[-800:]}")
ref = subprocess.run(cmd(tmp + "/ref.db"), capture_output=True, text=True)
check(ref.returncode == 0, "uninterrupted reference run")
a, b = export(tmp + "/ref.db", "ref"), export(tmp + "/int.db", "int")
check(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]), "interrupted + resumed = uninterrupted (ids, features)")
done("interrupt_mpi")
PY
