#!/usr/bin/env bash
# Another program's SQLite file given as --db is refused by every command
# with "FILE is not a qformer database", and nothing changes: same bytes, no
# table added, no lock file left. Databases qformer makes carry PRAGMA
# application_id; one made before that (application_id 0, our schema) still
# works read-only and is marked by the next `index`. Before: `search` said
# to run `index`, and `index` added five tables to the file.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export TMPDIR_QF="$tmp"
PYTHONPATH="$here" python3 - <<'PY'
import hashlib, json, os, shutil, sqlite3
from qfcheck import *
tmp = os.environ["TMPDIR_QF"]; itm = FIX + "/tiny-blip2-itm"
shutil.copytree(FIX + "/tiny-blip2-itm/inputs", tmp + "/c")
APP = 0x51466D72
sha = lambda p: hashlib.sha256(open(p, "rb").read()).hexdigest()

def foreign(name, app=0, user_version=0, wal=False):
    p = f"{tmp}/{name}"
    c = sqlite3.connect(p)
    if wal: c.execute("PRAGMA journal_mode = WAL")
    c.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    c.execute("INSERT INTO notes(body) VALUES ('groceries')")
    c.execute(f"PRAGMA application_id = {app}"); c.execute(f"PRAGMA user_version = {user_version}")
    c.commit(); c.close()
    return p

for p in (foreign("notes.db"), foreign("app.db", app=0x4A534F4E), foreign("versioned.db", user_version=1),
          foreign("images_too.db", user_version=1, wal=True)):
    h = sha(p)
    for args in (["index", "--model", itm, "--db", p, "--quiet", tmp + "/c"],
                 ["search", "--db", p, "a cat"], ["info", "--db", p], ["info", "--db", p, "--check"],
                 ["export", "--db", p, "--out", tmp + "/exp"]):
        r = run(*args, check=False)
        check(r.returncode == 1, f"{args[0]} {os.path.basename(p)}: exit {r.returncode}")
        check(f"{p} is not a qformer database" in r.stderr, f"{args[0]} {os.path.basename(p)}: message {r.stderr!r}")
    check(sha(p) == h, f"{p}: the file was changed")
    tables = [t for (t,) in sqlite3.connect(p).execute("SELECT name FROM sqlite_master WHERE type='table'")]
    check(tables == ["notes"], f"{p}: tables now {tables}")
    check(not os.path.exists(p + ".lock"), f"{p}: stray lock file")
    check(not os.path.exists(p + ".faiss"), f"{p}: stray FAISS file")

# a new database is marked
db = tmp + "/q.db"
run("index", "--model", itm, "--db", db, "--quiet", tmp + "/c")
app = sqlite3.connect(db).execute("PRAGMA application_id").fetchone()[0]
check(app == APP, f"new database application_id {app:#x}")
ref = json.loads(run("search", "--db", db, "--format", "json", "a cat").stdout)
# one made before the mark (application_id 0): read-only commands work and
# leave it as it is, the next index run marks it
c = sqlite3.connect(db); c.execute("PRAGMA application_id = 0"); c.commit(); c.close()
got = json.loads(run("search", "--db", db, "--format", "json", "a cat").stdout)
check(got == ref, "unmarked qformer database: same search results")
check(sqlite3.connect(db).execute("PRAGMA application_id").fetchone()[0] == 0, "search wrote nothing")
r = run("index", "--model", itm, "--db", db, "--quiet", tmp + "/c")
check("embedded 0 images" in r.stdout, f"unmarked database re-indexed incrementally: {r.stdout}")
check(sqlite3.connect(db).execute("PRAGMA application_id").fetchone()[0] == APP, "index marked it")
done("foreign_db")
PY
