#!/usr/bin/env bash
# Which model `index` uses. (6) A captioning checkpoint is refused before
# anything is created ("... is a captioning checkpoint; index needs a
# retrieval checkpoint such as Salesforce/blip2-itm-vit-g"), and a new
# database records its model only once a run has embedded with it: a
# retrieval checkpoint that fails to load does not claim the database, so the
# right model is accepted next. (7) Re-runs without --model use the model the
# database records (and say so); a moved model gets "pass --model"; --model
# ORG/NAME resolves through the hub cache for `index` and `search` (and
# --caption-model for search). Before: "tensor ... not found" and the
# database claimed; "--model and --db are required"; "No such file or
# directory" for ORG/NAME.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export TMPDIR_QF="$tmp"
PYTHONPATH="$here" python3 - <<'PY'
import json, os, shutil, struct
from qfcheck import *
tmp = os.environ["TMPDIR_QF"]; itm = FIX + "/tiny-blip2-itm"; opt = FIX + "/tiny-blip2-opt"
c = tmp + "/c"; shutil.copytree(itm + "/inputs", c)
env = dict(os.environ); env.pop("HF_HUB_CACHE", None); env.pop("HF_HOME", None); env["QF_CACHE"] = tmp + "/cache"
q = lambda *a: run(*a, check=False, env=env)

# (6) a captioning checkpoint: refused first, nothing created
db = tmp + "/a.db"
r = q("index", "--model", opt, "--db", db, c)
check(r.returncode == 1 and f"{opt} is a captioning checkpoint" in r.stderr and
      "index needs a retrieval checkpoint such as Salesforce/blip2-itm-vit-g" in r.stderr, f"captioning: {r.stderr!r}")
check(not any(os.path.exists(db + s) for s in ("", ".lock", ".faiss", "-wal")), "captioning: nothing created")
# a retrieval checkpoint with a tensor missing: the run fails, the database is not claimed
bad = tmp + "/bad-itm"; shutil.copytree(itm, bad)
raw = open(itm + "/model.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]; head = json.loads(raw[8:8 + n])
gone = next(k for k in head if k.endswith("intermediate.dense.weight"))
del head[gone]
h = json.dumps(head).encode(); h += b" " * (-len(h) % 8)
open(bad + "/model.safetensors", "wb").write(struct.pack("<Q", len(h)) + h + raw[8 + n:])
r = q("index", "--model", bad, "--db", db, c)
check(r.returncode == 1 and gone in r.stderr, f"broken checkpoint fails: {r.stderr!r}")
r = q("index", "--model", itm, "--db", db, c)
check(r.returncode == 0 and "the index holds" in r.stdout, f"the right model is accepted next: {r.stderr!r}")

# (7) re-runs without --model: the recorded model, said on stderr
open(c + "/new.png", "wb").write(open(c + "/" + sorted(os.listdir(c))[0], "rb").read()[:])
r = q("index", "--db", db, c)
check(r.returncode == 0 and "embedded 1 image" in r.stdout, f"re-run without --model: {r.stdout} {r.stderr}")
check(f"using the model {db} records: {os.path.realpath(itm)}" in r.stderr, f"says which model: {r.stderr!r}")
r = q("index", "--db", tmp + "/fresh.db", c)
check(r.returncode == 2 and "--model is required to create" in r.stderr, f"new database without --model: {r.stderr!r}")
# ORG/NAME through the hub cache, for index and search
snap = tmp + "/cache/models--Salesforce--blip2-itm-vit-g/snapshots/abc123"
shutil.copytree(itm, snap, ignore=shutil.ignore_patterns("inputs"))
os.makedirs(tmp + "/cache/models--Salesforce--blip2-itm-vit-g/refs")
open(tmp + "/cache/models--Salesforce--blip2-itm-vit-g/refs/main", "w").write("abc123")
capsnap = tmp + "/cache/models--Salesforce--blip2-opt-2.7b/snapshots/def456"
shutil.copytree(opt, capsnap)
hubdb = tmp + "/hub.db"
r = q("index", "--model", "Salesforce/blip2-itm-vit-g", "--db", hubdb, "--quiet", c)
check(r.returncode == 0, f"index --model ORG/NAME: {r.stderr!r}")
r = q("search", "--db", hubdb, "--model", "Salesforce/blip2-itm-vit-g", "--caption", "1",
      "--caption-model", "Salesforce/blip2-opt-2.7b", "--format", "json", "a cat")
check(r.returncode == 0 and json.loads(r.stdout)["results"][0]["caption"], f"search --model/--caption-model ORG/NAME: {r.stderr!r}")
r = q("search", "--db", hubdb, "--model", "Salesforce/not-pulled", "a cat")
check(r.returncode == 1 and "qformer pull" in r.stderr and r.stderr.count("\n") == 1, f"not in the cache: {r.stderr!r}")
# the recorded model moved: say to pass --model
shutil.move(snap, tmp + "/moved")
for args in (("index", "--db", hubdb, c), ("search", "--db", hubdb, "a cat")):
    r = q(*args)
    check(r.returncode == 1 and "not there any more; pass --model" in r.stderr, f"{args[0]} after a move: {r.stderr!r}")
r = q("search", "--db", hubdb, "--model", tmp + "/moved", "a cat")
check(r.returncode == 0, f"search --model NEW_PLACE: {r.stderr!r}")
done("index_model")
PY
