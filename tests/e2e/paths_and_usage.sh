#!/usr/bin/env bash
# Exit codes and arguments a new user gets wrong. A PATH (or @LIST line)
# that does not exist or cannot be read at all: the rest is indexed, the run
# names it and exits 1; a mistyped folder alone leaves no empty database.
# --db naming a folder is an error that leaves no stray lock file. An empty
# query, `embed` with nothing to embed, --prompt / --caption-model without
# --caption are usage errors (2). A query over 32 tokens gets a note that it
# was truncated. Before: exit 0 for all of these, an empty database and
# "<folder>.lock" left behind, and long queries cut silently.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export TMPDIR_QF="$tmp"
PYTHONPATH="$here" python3 - <<'PY'
import os, shutil
from qfcheck import *
tmp = os.environ["TMPDIR_QF"]; itm = FIX + "/tiny-blip2-itm"; opt = FIX + "/tiny-blip2-opt"
c = tmp + "/c"; shutil.copytree(itm + "/inputs", c)
n_in = len(os.listdir(c))
q = lambda *a: run(*a, check=False)
leftovers = lambda db: [p for p in (db, db + ".lock", db + "-wal", db + "-shm", db + ".faiss") if os.path.exists(p)]

# a mistyped folder alone: exit 1, named, nothing created
db = tmp + "/typo.db"
r = q("index", "--model", itm, "--db", db, tmp + "/photoes")
check(r.returncode == 1 and tmp + "/photoes" in r.stderr and "was not created" in r.stderr, f"typo: {r.returncode} {r.stderr!r}")
check(leftovers(db) == [], f"typo: left {leftovers(db)}")
# a missing PATH beside a good one: the good one is indexed, exit 1, named
db = tmp + "/x.db"
r = q("index", "--model", itm, "--db", db, c, tmp + "/nope")
check(r.returncode == 1 and "the index holds 6 images" in r.stdout, f"missing PATH: {r.returncode} {r.stdout}")
check(tmp + "/nope" in r.stderr and "1 of the given paths could not be read" in r.stderr, f"missing PATH named: {r.stderr!r}")
# an @LIST with a missing entry and one that is not a file
lst = tmp + "/list.txt"
open(lst, "w").write(f"{c}/{sorted(os.listdir(c))[0]}\n{tmp}/gone.png\n/dev/null\n")
r = q("index", "--model", itm, "--db", tmp + "/l.db", "@" + lst)
check(r.returncode == 1 and "the index holds 1 image" in r.stdout, f"@LIST: {r.returncode} {r.stdout}")
check(f"{tmp}/gone.png" in r.stderr and "/dev/null" in r.stderr and "2 of the given paths" in r.stderr, f"@LIST named: {r.stderr!r}")
# the same folder again, all there: exit 0
check(q("index", "--model", itm, "--db", db, c).returncode == 0, "all paths there: exit 0")
# --db naming a folder
os.mkdir(tmp + "/dbdir")
for args in (("index", "--model", itm, "--db", tmp + "/dbdir", c), ("search", "--db", tmp + "/dbdir", "a cat"),
             ("info", "--db", tmp + "/dbdir")):
    r = q(*args)
    check(r.returncode == 1 and f"{tmp}/dbdir is a folder" in r.stderr, f"{args[0]} --db folder: {r.returncode} {r.stderr!r}")
    check(not os.path.exists(tmp + "/dbdir.lock") and os.listdir(tmp + "/dbdir") == [], f"{args[0]}: stray files")
# usage errors
for args, want in ((("search", "--db", db, ""), "empty"), (("search", "--db", db, "  "), "empty"),
                   (("search", "--db", db, "--prompt", "a photo of", "a cat"), "--prompt only applies with --caption"),
                   (("search", "--db", db, "--caption-model", opt, "a cat"), "--caption-model only applies with --caption"),
                   (("embed", "--model", itm, "--out", tmp + "/e.safetensors"), "nothing to embed")):
    r = q(*args)
    check(r.returncode == 2 and want in r.stderr, f"{args}: {r.returncode} {r.stderr!r}")
check(not os.path.exists(tmp + "/e.safetensors"), "embed wrote nothing")
# a query over 32 tokens: a note, and the same results as its first 30 words
long = " ".join(f"word{i}" for i in range(60))
r = q("search", "--db", db, "-k", "2", long)
check(r.returncode == 0 and "tokens long" in r.stderr and "first 32" in r.stderr, f"long query note: {r.stderr!r}")
r = q("search", "--db", db, "-k", "2", "a cat on a sofa")
check(r.returncode == 0 and r.stderr == "", f"short query: no note: {r.stderr!r}")
done("paths_and_usage")
PY
