#!/usr/bin/env bash
# A read-only index (a shared copy in a folder this user cannot write):
# `search`, `search --rerank`, `search --caption`, `info`, `info --check` and
# `export` work and give the same results as on a writable copy; captions
# are not cached (a note says so) and nothing beside or in the database is
# written. Before: "attempt to write a readonly database" / "enabling WAL".
# As root (CI), chmod does not stop root, so the commands run as `nobody`
# (setpriv) on files root owns; otherwise the folder is chmod a-w. The test
# first proves the setup: that user cannot create a file in the folder.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d); trap 'chmod -R u+w "$tmp"; rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
export TMPDIR_QF="$tmp"
PYTHONPATH="$here" python3 - <<'PY'
import hashlib, json, os, shutil, subprocess
from qfcheck import *
tmp = os.environ["TMPDIR_QF"]
# everything the other user runs or reads lives under tmp (the build tree may be private)
shutil.copy(QF, tmp + "/qformer"); qf = tmp + "/qformer"
shutil.copytree(FIX + "/tiny-blip2-itm", tmp + "/itm"); shutil.copytree(FIX + "/tiny-blip2-opt", tmp + "/opt")
shutil.copytree(FIX + "/tiny-blip2-itm/inputs", tmp + "/c")
for root, dirs, files in os.walk(tmp):
    for d in dirs: os.chmod(os.path.join(root, d), 0o755)
    for f in files: os.chmod(os.path.join(root, f), 0o644)
os.chmod(qf, 0o755)
rw = tmp + "/rw"; ro = tmp + "/ro"
os.mkdir(rw)
subprocess.run([qf, "index", "--model", tmp + "/itm", "--db", rw + "/x.db", "--quiet", tmp + "/c"], check=True,
               capture_output=True)
shutil.copytree(rw, ro)
os.remove(ro + "/x.db.lock")
if os.geteuid() == 0:
    as_user = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    for p in (ro, *[os.path.join(ro, f) for f in os.listdir(ro)]): os.chmod(p, 0o755 if os.path.isdir(p) else 0o644)
else:
    as_user = []
    for f in os.listdir(ro): os.chmod(os.path.join(ro, f), 0o444)
    os.chmod(ro, 0o555)
probe = subprocess.run(as_user + ["touch", ro + "/probe"], capture_output=True)
check(probe.returncode != 0, "setup: the user running the checks cannot write the read-only folder")

def q(folder, *a, user=()):
    return subprocess.run([*user, qf, *a], capture_output=True, text=True, cwd=tmp)

def same(*a):
    want = q(rw, *[x.replace("@DB", rw + "/x.db") for x in a])
    got = q(ro, *[x.replace("@DB", ro + "/x.db") for x in a], user=as_user)
    check(got.returncode == 0, f"read-only {a}: exit {got.returncode}: {got.stderr}")
    check(want.returncode == 0, f"writable {a}: {want.stderr}")
    return want, got

before = {f: hashlib.sha256(open(os.path.join(ro, f), "rb").read()).hexdigest() for f in os.listdir(ro)}
w, g = same("search", "--db", "@DB", "-k", "4", "--format", "json", "a cat")
check(json.loads(w.stdout)["results"] == json.loads(g.stdout)["results"], "search: same results")
w, g = same("search", "--db", "@DB", "-k", "3", "--rerank", "5", "--format", "json", "a cat")
check(json.loads(w.stdout)["results"] == json.loads(g.stdout)["results"], "search --rerank: same results")
w, g = same("search", "--db", "@DB", "-k", "2", "--caption", "2", "--caption-model", tmp + "/opt", "--format", "json", "a cat")
wr, gr = json.loads(w.stdout)["results"], json.loads(g.stdout)["results"]
check([r["caption"] for r in wr] == [r["caption"] for r in gr] and gr[0]["caption"], f"search --caption: same captions {gr}")
check("read-only" in g.stderr and "not cached" in g.stderr, f"search --caption notes the cache is not written: {g.stderr!r}")
w, g = same("info", "--db", "@DB", "--format", "json")
wi, gi = json.loads(w.stdout), json.loads(g.stdout)
for key in ("images", "index_vectors", "index_in_sync"):
    check(wi.get(key) == gi.get(key), f"info {key}: {gi.get(key)} != {wi.get(key)}")
same("info", "--db", "@DB", "--check")
os.mkdir(tmp + "/out"); os.chmod(tmp + "/out", 0o777)
g = q(ro, "export", "--db", ro + "/x.db", "--out", tmp + "/out/exp", user=as_user)
check(g.returncode == 0, f"export of a read-only index: {g.stderr}")
after = {f: hashlib.sha256(open(os.path.join(ro, f), "rb").read()).hexdigest() for f in os.listdir(ro)}
check(after == before, f"nothing written in the read-only folder: {sorted(before)} -> {sorted(after)}")
done("readonly_index")
PY
