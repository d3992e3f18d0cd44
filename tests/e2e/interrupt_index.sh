#!/usr/bin/env bash
# ctrl-C (SIGINT) and SIGTERM during `qformer index`: the run stops handing
# out work, commits what is done, brings the FAISS file in step with it, says
# "interrupted: N images saved; re-run the same command to resume" and exits
# 130; `info` shows the vectors (never -1), `info --check` exits 0, search
# answers without a warning, and the same command resumes and completes. A
# second signal quits at once, still consistent. Timing-robust: each signal
# is sent once the run has committed some images (polled read-only), and the
# corpus is large enough that the run is far from done by then. Before: the
# process died silently, `info` showed "vectors -1", `--check` failed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export TMPDIR_QF="$tmp"
PYTHONPATH="$here" python3 - <<'PY'
import json, os, random, re, signal, sqlite3, subprocess, time
from qfcheck import *
tmp = os.environ["TMPDIR_QF"]; itm = FIX + "/tiny-blip2-itm"
rng = random.Random(8)
N = 400
os.makedirs(tmp + "/c")
for i in range(N):
    open(f"{tmp}/c/p{i:03d}.png", "wb").write(make_png(rng.randint(64, 128), rng.randint(64, 128), rng, 2))

def committed(db):
    try:
        c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        n = c.execute("SELECT count(*) FROM images WHERE status != 'pending'").fetchone()[0]; c.close()
        return n
    except sqlite3.Error:
        return 0

def interrupted_run(db, sigs):
    cmd = [QF, "index", "--model", itm, "--db", db, "--batch", "2", "--checkpoint", "4", tmp + "/c"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    while committed(db) < 8 and p.poll() is None and time.monotonic() - t0 < 300: time.sleep(0.005)
    check(p.poll() is None, f"{db}: the run was still going when signalled")
    for k, sig in enumerate(sigs):
        if k: time.sleep(0.01)
        if p.poll() is None: p.send_signal(sig)
    out, err = p.communicate(timeout=300)
    return p.returncode, out, err

for name, sigs in (("int", [signal.SIGINT]), ("term", [signal.SIGTERM])):
    db = f"{tmp}/{name}.db"
    rc, out, err = interrupted_run(db, sigs)
    check(rc == 130, f"{name}: exit {rc}, stderr {err!r}")
    m = re.search(r"interrupted: (\d+) images saved; re-run the same command to resume", err)
    check(bool(m), f"{name}: interrupted message: {err!r}")
    check("stopping" in err, f"{name}: first-signal message: {err!r}")
    saved = int(m.group(1)) if m else -1
    n_done = committed(db)
    check(saved == n_done and 8 <= saved < N, f"{name}: {saved} saved, {n_done} committed of {N}")
    info = json.loads(run("info", "--db", db, "--format", "json").stdout)
    check(info["index_vectors"] == info["ok"] * info["n_query"] and info["index_in_sync"],
          f"{name}: FAISS in step with the committed images: {info}")
    txt = run("info", "--db", db).stdout
    check(re.search(r"vectors\s+\d+ in ", txt) and not re.search(r"\s-1\b", txt), f"{name}: info vectors: {txt}")
    c = run("info", "--db", db, "--check", check=False)
    check(c.returncode == 0, f"{name}: info --check after an interrupted run: {c.returncode} {c.stdout} {c.stderr}")
    s = run("search", "--db", db, "-k", "3", "--format", "json", "a photo")
    check(len(json.loads(s.stdout)["results"]) == 3 and s.stderr == "", f"{name}: search after the interrupt: {s.stderr!r}")
    r = run("index", "--model", itm, "--db", db, "--quiet", tmp + "/c")
    check(f"embedded {N - saved} images" in r.stdout and f"the index holds {N} images" in r.stdout,
          f"{name}: the re-run resumes: {r.stdout}")
    check(run("info", "--db", db, "--check", check=False).returncode == 0, f"{name}: check after resuming")

# a second signal quits at once; the store stays consistent and a re-run completes
db = f"{tmp}/twice.db"
rc, out, err = interrupted_run(db, [signal.SIGINT, signal.SIGINT])
check(rc == 130, f"twice: exit {rc}: {err!r}")
ok = sqlite3.connect(f"file:{db}?mode=ro", uri=True).execute("PRAGMA integrity_check").fetchone()[0]
check(ok == "ok", f"twice: integrity {ok}")
r = run("index", "--model", itm, "--db", db, "--quiet", tmp + "/c")
check(f"the index holds {N} images" in r.stdout, f"twice: the re-run completes: {r.stdout}")
check(run("info", "--db", db, "--check", check=False).returncode == 0, "twice: check after resuming")
done("interrupt_index")
PY
