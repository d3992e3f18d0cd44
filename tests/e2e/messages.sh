#!/usr/bin/env bash
# The messages a new user reads. A mistyped option of any command gets the
# nearest one ("unknown option '--modle'; did you mean '--model'?"), as
# mistyped commands already did; a missing value, an ambiguous prefix and a
# TEXT starting with '-' ("-20 degrees", hint: put it after --) are named.
# "X is required" names the option that is missing. The index report counts
# failures apart from the embedded images and says "1 image". `--out` into a
# missing folder says why it cannot write. Before: getopt's bare
# "unrecognized option", "--model and --db are required", "indexed 7 images
# (0 embedded, 7 failed and skipped)", "holds 1 images", "cannot write".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export TMPDIR_QF="$tmp"
PYTHONPATH="$here" python3 - <<'PY'
import os, shutil
from qfcheck import *
tmp = os.environ["TMPDIR_QF"]; itm = FIX + "/tiny-blip2-itm"
c = tmp + "/c"; shutil.copytree(itm + "/inputs", c); os.remove(c + "/texts.json")
db = tmp + "/m.db"
q = lambda *a: run(*a, check=False)
for args, want in (
        (("index", "--modle", itm, "--db", db, c), "unknown option '--modle'; did you mean '--model'?"),
        (("search", "--db", db, "--formt", "json", "x"), "unknown option '--formt'; did you mean '--format'?"),
        (("info", "--db", db, "--chek"), "unknown option '--chek'; did you mean '--check'?"),
        (("caption", "--modl", itm, "x.png"), "did you mean '--model'?"),
        (("export", "--db", db, "--uot", tmp), "did you mean '--out'?"),
        (("search", "--db", db, "--ca", "3", "x"), "option '--ca' is ambiguous: --caption, --caption-model"),
        (("search", "--db", db, "x", "-k"), "option '-k' needs a value"),
        (("search", "--db"), "option '--db' needs a value"),
        (("index", "--pooled=1", "--db", db, c), "option '--pooled' takes no value"),
        (("search", "--db", db, "-20 degrees"), "a TEXT that starts with '-' goes after --"),
        (("index", "--model", itm, c), "--db is required"),
        (("embed", "--model", itm, "--text", "a"), "--out is required"),
        (("export", "--db", db), "--out is required")):
    r = q(*args)
    check(r.returncode == 2 and want in r.stderr, f"{args}: exit {r.returncode}, {r.stderr!r}")
    check(r.stderr.count("\n") == 1, f"{args}: one line: {r.stderr!r}")
# the report: failures apart, singular
open(c + "/bad1.png", "wb").write(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
open(c + "/bad2.jpg", "wb").write(b"\xff\xd8\xff garbage")
r = q("index", "--model", itm, "--db", db, c)
check(r.returncode == 0 and "embedded 6 images, 2 failed (bad input, skipped), 0 unchanged, 0 removed; "
      "the index holds 6 images" in r.stdout, f"report: {r.stdout!r}")
check("indexed" not in r.stdout.split(";")[0], f"failures not counted as indexed: {r.stdout!r}")
one = tmp + "/one"; os.mkdir(one); shutil.copy(c + "/gray_64x48.png", one)
r = q("index", "--model", itm, "--db", tmp + "/one.db", one)
check("embedded 1 image, 0 failed" in r.stdout and "the index holds 1 image;" in r.stdout, f"singular: {r.stdout!r}")
# --out where it cannot write: why
r = q("search", "--db", db, "--out", "/nonexistent/x.html", "--format", "html", "a cat")
check(r.returncode == 1 and "/nonexistent/x.html: cannot write: No such file or directory" in r.stderr, f"--out: {r.stderr!r}")
done("messages")
PY
