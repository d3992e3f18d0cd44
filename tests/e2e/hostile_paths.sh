#!/usr/bin/env bash
# Hostile file names and files that change under a run: spaces, newlines,
# tabs, quotes, HTML and terminal escapes, non-UTF-8 bytes (files and
# folders), very long names, a FIFO, symbolic link loops and dangling links,
# @LIST entries that do not exist or are not files, a file deleted and one
# truncated while a run goes, unreadable files and folders. Each is handled
# with a clear per-file message, every run exits 0, and export / search
# (JSON, table, HTML) give the exact names back: bytes that are not UTF-8 as
# "\udcXX" (Python's surrogateescape), so os.fsencode(path) is the name.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d); trap 'chmod -R u+rwx "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
chmod 755 "$tmp"                       # an unprivileged user runs part 4 in here
export TMPDIR_QF="$tmp"
PYTHONPATH="$here" python3 - <<'PY'
import json, os, random, signal, sqlite3, stat, struct, subprocess, time, zlib
from qfcheck import *
tmp = os.path.realpath(os.environ["TMPDIR_QF"]); itm = FIX + "/tiny-blip2-itm"
rng = random.Random(5)
fs = os.fsencode

def png_bytes(w, h):
    return make_png(w, h, rng)

def put(path, data=None):
    path = fs(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f: f.write(data if data is not None else png_bytes(rng.randint(8, 60), rng.randint(8, 60)))
    return path

def qf(*args, timeout=120, binary=None, **kw):
    """qformer with bytes arguments; returns (rc, stdout bytes, stderr bytes)."""
    r = subprocess.run([fs(binary or QF), *map(fs, args)], capture_output=True, timeout=timeout, **kw)
    return r.returncode, r.stdout, r.stderr

def rows(db):
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True); c.text_factory = bytes
    out = {p: (s.decode(), e) for p, s, e in c.execute("SELECT path, status, error FROM images")}
    c.close()
    return out

# ---- 1. hostile names in a folder walk -------------------------------------
C = fs(tmp + "/corpus")
names = [b"with space.png", b"  lead and trail  .png", b"new\nline.png", b"tab\there.png",
         b"caf\xe9.png", b"quote\"back\\slash.png", b"<b>&amp;'x.png", b"-dash.png", b"@at.png",
         b"esc\x1b[31m.png", "emoji \U0001f431 ü.png".encode(), b"x" * 240 + b".png",
         b"dir with space/in.png", b"d\xe9j\xe0 vu/in\xff.png", b"deep/" * 40 + b"in.png",
         b"noext_image"]                            # found by its PNG signature
good = [put(C + b"/" + n) for n in names]
bad = put(C + b"/broken \xfe.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 30)          # recorded as bad input
put(C + b"/notes.txt", b"not an image\n")                                        # ignored
os.symlink(b".", C + b"/loop_dir")                                               # folder link: not walked
os.symlink(b"l2.png", C + b"/l1.png"); os.symlink(b"l1.png", C + b"/l2.png")     # link loop
os.symlink(b"nowhere.png", C + b"/dangling.png")                                 # dangling link
os.symlink(b"with space.png", C + b"/alias.png")                                 # link to a file: indexed
good.append(C + b"/alias.png")
os.mkfifo(C + b"/pipe.png")                                                      # not a file: skipped, no hang
db = tmp + "/h.db"
rc, out, err = qf("index", "--model", itm, "--db", db, "--quiet", C)
check(rc == 0, f"hostile names: exit {rc}: {err!r}")
n_good = len(good)
check(f"indexed {n_good + 1} images ({n_good} embedded, 1 failed and skipped)".encode() in out, f"report: {out!r}")
check(b"3 paths could not be scanned" in out, f"3 scan errors (link loop x2, dangling link): {out!r}")
for n in (b"l1.png", b"l2.png"):
    check(any(n in l and b"symbolic link" in l and b"levels" in l for l in err.splitlines()), f"{n}: loop reported: {err!r}")
check(any(b"dangling.png" in l and b"No such file" in l for l in err.splitlines()), "dangling link reported")
check(b"pipe.png" not in err and b"notes.txt" not in err and b"loop_dir" not in err, f"nothing else reported: {err!r}")
db_rows = rows(db)
check(sorted(db_rows) == sorted(good + [bad]), f"stored paths are the exact names: {sorted(db_rows)}")
check(all(db_rows[p][0] == "ok" for p in good), "hostile names embedded")
st, e = db_rows[bad]
check(st == "error" and e.startswith(bad + b":"), f"bad input recorded with its exact name: {e!r}")
rc, out, _ = qf("index", "--model", itm, "--db", db, "--quiet", C)
check(rc == 0 and f"indexed 0 images (0 embedded, 0 failed and skipped), {n_good + 1} unchanged, 0 removed".encode() in out,
      f"re-run: nothing changed: {out!r}")

# export: one JSON object per line, names round-trip through os.fsencode
rc, out, err = qf("export", "--db", db, "--out", tmp + "/exp")
check(rc == 0, f"export: exit {rc}: {err!r}")
raw = open(tmp + "/exp/images.jsonl", "rb").read()
raw.decode("utf-8")                                           # the file itself is valid UTF-8
lines = raw.splitlines()
check(len(lines) == n_good + 1, f"{len(lines)} lines")
recs = [json.loads(l) for l in lines]
check(sorted(fs(r["path"]) for r in recs) == sorted(good + [bad]), "exported paths: os.fsencode gives the names")
check(b'"' + C.replace(b"/", b"/") + b'/caf\\udce9.png"' in raw, "non-UTF-8 byte written as \\udce9")
rb = [r for r in recs if fs(r["path"]) == bad][0]
check(rb["status"] == "error" and fs(rb["error"]).startswith(bad + b":"), f"error text keeps the name: {rb['error']!r}")
check(all(os.path.exists(fs(r["path"])) for r in recs), "every exported path opens")

# search: JSON, table and HTML with these names
k = n_good
rc, out, err = qf("search", "--db", db, "-k", str(k), "--format", "json", "--", "a photo")
check(rc == 0, f"search json: {err!r}")
res = json.loads(out)["results"]
check(sorted(fs(x["path"]) for x in res) == sorted(good), "search paths: os.fsencode gives the names")
q = C + b"/caf\xe9.png"
rc, out, err = qf("search", "--db", db, "-k", "3", "--format", "json", "--image", q)
check(rc == 0, f"image search by a non-UTF-8 name: {err!r}")
o = json.loads(out)
check(fs(o["query"]) == b"image:" + q and fs(o["results"][0]["path"]) == q, f"image query finds itself: {o}")
rc, out, err = qf("search", "--db", db, "-k", str(k), "--", "a photo")
check(rc == 0, f"search table: {err!r}")
body = out.splitlines()
check(len([l for l in body if l.strip()[:1].isdigit()]) == k and len(body) == k + 2, f"one line per hit: {out!r}")
check(b"\x1b" not in out and b"new\\x0aline.png" in out and b"caf\\xe9.png" in out, "table escapes control and non-UTF-8 bytes")
rc, out, err = qf("search", "--db", db, "-k", str(k), "--format", "html", "--out", tmp + "/g.html", "--", "a photo")
check(rc == 0, f"search html: {err!r}")
html = open(tmp + "/g.html", "rb").read()
try:
    html.decode("utf-8"); ok_utf8 = True
except UnicodeDecodeError:
    ok_utf8 = False
check(ok_utf8, "the HTML page is valid UTF-8")
check(html.count(b'class="card"') == k and html.count(b"data:image/jpeg;base64,") == k, "a thumbnail per hit")
check(b"caf\\xe9.png" in html and b"&lt;b&gt;&amp;amp;&#39;x.png" in html and b"\x1b" not in html, "HTML escapes")
rc, out, err = qf("caption", "--model", FIX + "/tiny-blip2-opt", "--format", "json", "--max-new-tokens", "3", q)
check(rc == 0 and fs(json.loads(out)["image"]) == q, f"caption --format json with a non-UTF-8 name: {out!r} {err!r}")
rc, out, err = qf("info", "--db", db, "--failures")
check(rc == 0 and b"broken" in out, f"info --failures: {out!r} {err!r}")

# a file deleted since it was indexed: --rerank and --caption still answer,
# that hit without an ITM score (after the reranked ones) or caption
gone = C + b"/-dash.png"
os.remove(gone)
rc, out, err = qf("search", "--db", db, "-k", str(k), "--rerank", str(k), "--format", "json", "--", "a photo")
check(rc == 0, f"--rerank with a deleted file: exit {rc}: {err!r}")
if rc == 0:
    res = json.loads(out)["results"]
    check([fs(x["path"]) == gone for x in res] == [False] * (k - 1) + [True], "the deleted file's hit comes last")
    check(all(x["itm"] is not None for x in res[:-1]) and res[-1]["itm"] is None, "no ITM score for it only")
    check(any(b"not reranked" in l and gone in l for l in err.splitlines()), f"rerank warning names it: {err!r}")
rc, out, err = qf("search", "--db", db, "-k", str(k), "--caption", str(k), "--caption-model", FIX + "/tiny-blip2-opt",
                  "--format", "json", "--", "a photo")
check(rc == 0, f"--caption with a deleted file: exit {rc}: {err!r}")
if rc == 0:
    res = json.loads(out)["results"]
    check(all((x["caption"] is None) == (fs(x["path"]) == gone) for x in res), "no caption for it only")
    check(any(b"not captioned" in l and gone in l for l in err.splitlines()), f"caption warning names it: {err!r}")

# ---- 2. @LIST entries that are missing or not files ---------------------------
lst = fs(tmp + "/list.txt")
open(lst, "wb").write(C + b"/with space.png\r\n" + fs(tmp) + b"/no/such/file.png\n\n"
                      + C + b"/caf\xe9.png\n/dev/null\n" + C + b"/pipe.png\n" + fs(tmp) + b"/gone.png\n")
rc, out, err = qf("index", "--model", itm, "--db", tmp + "/l.db", "--quiet", b"@" + lst)
check(rc == 0, f"@LIST: exit {rc}: {err!r}")
check(b"indexed 2 images (2 embedded" in out and b"4 paths could not be scanned" in out, f"@LIST report: {out!r}")
for what, why in ((b"/no/such/file.png", b"No such file"), (b"/gone.png", b"No such file"),
                  (b"/dev/null", b"not a regular file"), (b"pipe.png", b"not a regular file")):
    check(any(what in l and why in l for l in err.splitlines()), f"@LIST: {what} reported ({why}): {err!r}")
rc, out, err = qf("index", "--model", itm, "--db", tmp + "/l.db", "--quiet", b"@" + fs(tmp) + b"/no-list.txt")
check(rc == 1 and b"no-list.txt" in err, f"a missing @LIST file is an error of the run: {rc} {err!r}")

# ---- 3. a file deleted and one truncated while a run goes --------------------
V = fs(tmp + "/v")
for i in range(150):
    put(V + b"/f%03d.png" % i)
vanish = put(V + b"/zz_vanish.png")
trunc_data = png_bytes(160, 160)
trunc = put(V + b"/zz_trunc.png", trunc_data)
fifo = put(V + b"/zz_fifo.png")                  # becomes a FIFO: reading it must not hang the run
dbv = tmp + "/v.db"
p = subprocess.Popen([fs(QF), b"index", b"--model", fs(itm), b"--db", fs(dbv), b"--quiet", b"--checkpoint", b"1",
                      b"--batch", b"1", V], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
t0 = time.monotonic(); acted = None
while time.monotonic() - t0 < 60 and p.poll() is None:
    try:
        r = rows(dbv)
    except sqlite3.Error:
        r = {}
    if vanish in r and trunc in r and fifo in r:
        acted = (r[vanish][0], r[trunc][0], r[fifo][0])
        os.remove(vanish)
        with open(trunc, "r+b") as f: f.truncate(len(trunc_data) // 3)
        os.remove(fifo); os.mkfifo(fifo)
        break
    time.sleep(0.005)
try:
    out, err = p.communicate(timeout=60)
except subprocess.TimeoutExpired:
    p.kill(); out, err = p.communicate()
    check(False, "the run hung (on the FIFO?)")
check(acted == ("pending", "pending", "pending"), f"the files changed before the run read them: {acted}")
check(p.returncode == 0, f"vanish/truncate run: exit {p.returncode}: {err!r}")
check(b"indexed 153 images (150 embedded, 3 failed and skipped)" in out, f"report: {out!r}")
r = rows(dbv)
check(r[fifo][0] == "error" and r[fifo][1].startswith(fifo + b": not a regular file"), f"FIFO: {r[fifo]}")
os.remove(fifo)
check(r[vanish][0] == "error" and r[vanish][1].startswith(vanish + b": No such file"), f"vanished: {r[vanish]}")
check(r[trunc][0] == "error" and r[trunc][1].startswith(trunc + b":"), f"truncated: {r[trunc]}")
rc, out, err = qf("index", "--model", itm, "--db", dbv, "--quiet", V)
check(rc == 0 and b"indexed 1 image (0 embedded, 1 failed and skipped), 150 unchanged, 2 removed" in out,
      f"re-run: vanished file and FIFO dropped, truncated one retried: {out!r}")
open(trunc, "wb").write(trunc_data)
rc, out, err = qf("index", "--model", itm, "--db", dbv, "--quiet", V)
check(rc == 0 and b"indexed 1 image (1 embedded, 0 failed" in out, f"restored file embedded: {out!r}")

# ---- 4. unreadable files and folders -----------------------------------------
# root reads files whatever their mode: as root these runs drop to uid/gid
# 65534 (nobody); where that is impossible only this part is skipped.
as_user = {}
if os.geteuid() == 0:
    try:
        subprocess.run(["true"], user=65534, group=65534, extra_groups=[], check=True)
        as_user = dict(user=65534, group=65534, extra_groups=[])
    except (OSError, subprocess.SubprocessError) as e:
        as_user = None
        print(f"hostile_paths: NOTE: running as root and cannot switch to uid 65534 ({e}): "
              "the unreadable file/folder sub-check is skipped")
if as_user is not None:
    # that user may not reach the build tree (a clone under /root is 0700): it
    # runs a copy of the binary and of the model from this test's own folder
    import shutil
    X = tmp + "/x"
    shutil.copytree(itm, X + "/itm")
    shutil.copy2(QF, X + "/qformer")
    for d, _, files in os.walk(X):
        os.chmod(d, 0o755)
        for f in files: os.chmod(os.path.join(d, f), 0o755)
    itm = X + "/itm"
    as_user["binary"] = X + "/qformer"
    U = fs(tmp + "/u")
    for n in (b"ok1.png", b"ok2.png", b"secret.png", b"noext", b"locked/in1.png", b"locked/in2.png"):
        put(U + b"/" + n)
    W = tmp + "/w"; os.mkdir(W); os.chmod(W, 0o777)        # the database folder, writable by that user
    dbu = W + "/u.db"
    os.chmod(U + b"/secret.png", 0); os.chmod(U + b"/noext", 0)
    rc, out, err = qf("index", "--model", itm, "--db", dbu, "--quiet", U, **as_user)
    check(rc == 0, f"unreadable files: exit {rc}: {err!r}")
    check(b"indexed 5 images (4 embedded, 1 failed and skipped)" in out and b"1 path could not be scanned" in out,
          f"unreadable files: report {out!r}")
    check(any(b"/u/noext" in l and b"Permission denied" in l for l in err.splitlines()),
          f"an unreadable file without extension is reported: {err!r}")
    r = rows(dbu)
    s = U + b"/secret.png"
    check(r[s][0] == "error" and r[s][1].startswith(s + b": Permission denied"), f"unreadable image recorded: {r[s]}")
    # an unreadable folder hides its files: they are kept, not dropped
    os.chmod(U + b"/locked", 0)
    rc, out, err = qf("index", "--model", itm, "--db", dbu, "--quiet", U, **as_user)
    check(rc == 0 and b"0 removed; the index holds 4 images" in out and b"could not be scanned" in out,
          f"unreadable folder: its images stay: {out!r} {err!r}")
    check(any(b"/u/locked" in l and b"Permission denied" in l for l in err.splitlines()), f"folder reported: {err!r}")
    rc, out, err = qf("search", "--db", dbu, "-k", "10", "--format", "json", "--", "x", **as_user)
    check(rc == 0 and sum(fs(x["path"]).startswith(U + b"/locked/") for x in json.loads(out)["results"]) == 2,
          f"their images are still searchable: {out!r} {err!r}")
    os.chmod(U + b"/locked", 0o755)
    rc, out, err = qf("index", "--model", itm, "--db", dbu, "--quiet", U, **as_user)
    check(rc == 0 and b"0 removed" in out and b"5 unchanged" in out, f"readable again: nothing redone: {out!r}")
    # a folder that is really gone still takes its images with it
    for n in (b"in1.png", b"in2.png"): os.remove(U + b"/locked/" + n)
    os.rmdir(U + b"/locked")
    rc, out, err = qf("index", "--model", itm, "--db", dbu, "--quiet", U, **as_user)
    check(rc == 0 and b"2 removed; the index holds 2 images" in out, f"deleted folder dropped: {out!r}")
done("hostile_paths")
PY
