#!/usr/bin/env bash
# SIGKILL at 20 random moments: ~300 generated PNGs (random content, sizes
# and colour types) are indexed with the tiny model; `qformer index` is
# killed at 20 moments drawn from a seeded RNG (QF_CRASH_SEED overrides the
# seed), each time with random --batch/--checkpoint, re-run after every
# kill, then run to completion. After every kill the database passes
# SQLite's integrity check and `qformer search` still answers; at the end
# the export equals a clean run's (ids, paths, statuses, features bit for
# bit), `info --check` finds 0 problems and no temporary file is left over.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export TMPDIR_QF="$tmp"
PYTHONPATH="$here" python3 - <<'PY'
import glob, json, os, random, signal, sqlite3, struct, subprocess, time, zlib
import numpy as np
from qfcheck import *
tmp = os.environ["TMPDIR_QF"]; itm = FIX + "/tiny-blip2-itm"
seed = int(os.environ.get("QF_CRASH_SEED", "20240607"))
rng = random.Random(seed)
print(f"crash_kill20: seed {seed}")
corpus = tmp + "/corpus"

def png(path, w, h, color_type):
    open(path, "wb").write(make_png(w, h, rng, color_type))

N = 300
for i in range(N):
    sub = f"{corpus}/d{i % 7}"
    os.makedirs(sub, exist_ok=True)
    png(f"{sub}/img{i:03d}.png", rng.randint(4, 120), rng.randint(4, 120), rng.choice((0, 2, 2, 2, 4, 6)))
# two bad files: their error rows must survive the kills too
open(corpus + "/d0/broken.png", "wb").write(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
open(corpus + "/d1/empty.png", "wb").write(b"")

def export(db, name):
    out = f"{tmp}/{name}"
    run("export", "--db", db, "--out", out)
    rows = [json.loads(l) for l in open(out + "/images.jsonl")]
    return np.load(out + "/image_feats.npy"), np.load(out + "/image_ids.npy"), rows

def integrity(db, what):
    # read-only: inspect the crash state exactly as the killed run left it
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    ok = c.execute("PRAGMA integrity_check").fetchone()[0]; c.close()
    return check(ok == "ok", f"{what}: integrity_check: {ok}")

def done_count(db):
    if not os.path.exists(db): return 0
    try:
        c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        n = c.execute("SELECT count(*) FROM images WHERE status != 'pending'").fetchone()[0]; c.close()
        return n
    except sqlite3.Error:
        return 0                              # created, schema not committed yet

def index_cmd(db, batch, ckpt):
    return [QF, "index", "--model", itm, "--db", db, "--quiet", "--batch", str(batch),
            "--checkpoint", str(ckpt), corpus]

# clean reference run, timed: it sets the scale of the kill moments
clean = tmp + "/clean.db"
t0 = time.monotonic()
r = subprocess.run(index_cmd(clean, 4, 8), capture_output=True, text=True)
t_clean = time.monotonic() - t0
check(r.returncode == 0 and f"the index holds {N} images" in r.stdout, f"clean run: {r.stdout} {r.stderr}")
ref = export(clean, "clean")
t0 = time.monotonic()
run("index", "--model", itm, "--db", clean, "--quiet", corpus)
t_start = time.monotonic() - t0                   # start-up + finish, no work
rate = N / max(t_clean - t_start, 1e-3)            # images/s
print(f"crash_kill20: clean run {t_clean:.2f} s, no-op run {t_start:.2f} s, {rate:.0f} images/s")

# a run that completes starts the next kills on a fresh database, so every
# kill lands in a run with work to do (a loaded machine finishes runs early)
dbs = [tmp + "/k0.db"]
phases = []
# The timings above were taken at one moment; on a shared machine the load
# (and so start-up time and rate) changes from run to run. `scale` stretches
# the window each time a kill found no progress at all and shrinks it each
# time the run had already ended (ASan under ctest -j2 saw both), and every fourth kill
# is placed by progress rather than by time: it waits until the run has
# committed something, then kills after a short random delay, so kills fall in
# the middle of the embedding however fast or slow the machine is right now.
scale = 1.0
for k in range(20):
    db = dbs[-1]
    before = done_count(db)
    left = N + 2 - before
    # uniform over a window that covers ~1/15 of the corpus on average, so the
    # 20 kills fall all along the run: start-up, embedding, commits and, once
    # the work is done, the FAISS rebuild and write of the finishing runs
    window = 1.3 * scale * (t_start + min(left, 2 * N / 15) / rate)
    delay = rng.uniform(0.0, window)
    by_progress = k % 4 == 3
    batch, ckpt = rng.randint(1, 4), rng.randint(1, 8)
    p = subprocess.Popen(index_cmd(db, batch, ckpt), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if by_progress:
        deadline = time.monotonic() + 120
        while p.poll() is None and done_count(db) <= before and time.monotonic() < deadline:
            time.sleep(0.01)
        delay = rng.uniform(0.0, 0.1)
    time.sleep(delay)
    exited = p.poll() is not None
    p.send_signal(signal.SIGKILL)
    _, err = p.communicate()
    if exited:
        check(p.returncode == 0, f"kill {k}: run ended on its own with {p.returncode}: {err.decode(errors='replace')}")
    after = done_count(db)
    if not exited and after == before:
        scale = min(scale * 1.5, 16.0)
    elif exited and not by_progress:
        scale = max(scale / 1.5, 0.25)     # the load fell: the run beat the kill
    phases.append((round(delay, 3), batch, ckpt, before, after, "exited" if exited else "killed"))
    if exited and after == N + 2:
        dbs.append(f"{tmp}/k{len(dbs)}.db")
    if os.path.exists(db):
        integrity(db, f"after kill {k}")
        # readers are never stuck with a torn index: search answers (or, before
        # the first commit of the settings, says it is not an index yet)
        s = run("search", "--db", db, "-k", "3", "--format", "json", "--", "a photo", check=False)
        if s.returncode == 0:
            try:
                out = json.loads(s.stdout)
                check(isinstance(out.get("results"), list), f"after kill {k}: search JSON {s.stdout}")
            except ValueError:
                check(False, f"after kill {k}: search printed invalid JSON: {s.stdout!r}")
        else:
            check("not a qformer index" in s.stderr, f"after kill {k}: search failed: {s.stderr}")
for ph in phases:
    print("crash_kill20: delay %.3f s batch %d checkpoint %d: %d -> %d done (%s)" % ph)
check(sum(1 for ph in phases if ph[5] == "killed") >= 12, "most kills hit a running process")
check(any(0 < ph[4] < N + 2 for ph in phases), "some kill fell in the middle of the embedding")

fb, ib, rb = ref
for db in dbs:
    # the final, complete run and a no-op re-run; a kill while the FAISS file is
    # written leaves its temporary file: plant one in case no kill hit that window
    open(db + ".faiss.tmp.999999", "wb").write(b"torn")
    r = run("index", "--model", itm, "--db", db, "--quiet", corpus)
    check(f"the index holds {N} images" in r.stdout, "final run: " + r.stdout)
    r = run("index", "--model", itm, "--db", db, "--quiet", corpus)
    check("embedded 0 images" in r.stdout and f"{N + 2} unchanged" in r.stdout, "nothing left to do: " + r.stdout)

    fa, ia, ra = export(db, "killed" + os.path.basename(db))
    check(np.array_equal(ia, ib), "ids equal a clean run's")
    check(fa.dtype == fb.dtype and fa.shape == fb.shape and fa.tobytes() == fb.tobytes(),
          "features equal a clean run's bit for bit")
    check([(r["id"], r["path"], r["status"], r["width"], r["height"], r["row"]) for r in ra] ==
          [(r["id"], r["path"], r["status"], r["width"], r["height"], r["row"]) for r in rb], "images.jsonl rows")
    check(len(ra) == N + 2 and sum(r["status"] == "error" for r in ra) == 2, "2 bad files recorded once")
    check(len(set(ia.tolist())) == len(ia), "no duplicate ids")
    integrity(db, "final")
    r = run("info", "--db", db, "--check", check=False)
    check(r.returncode == 0 and "0 problem" in r.stdout, "info --check: " + r.stdout + r.stderr)
    # search results equal the clean index's (same FAISS content)
    for q in ("a photo", "red"):
        a = json.loads(run("search", "--db", db, "-k", "10", "--format", "json", "--", q).stdout)
        b = json.loads(run("search", "--db", clean, "-k", "10", "--format", "json", "--", q).stdout)
        check(a["results"] == b["results"], f"search '{q}' equals the clean index's")
left = [p for p in glob.glob(tmp + "/k*.db*") if ".tmp" in p]
check(not left, f"no temporary files left behind: {left}")
done("crash_kill20")
PY
