#!/usr/bin/env bash
# JSON wherever JSON is asked for. `info --failures --format json` prints one
# {"path", "error"} object per bad file (the error without the path repeated;
# the text form drops the repetition too), file names that are not UTF-8
# included; `caption --format json` gives "text" stripped as users print it
# (HF's examples: .strip()) with the ids unchanged, and `search --caption`
# prints the same text. Before: TSV with the path twice, and " text\n".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export TMPDIR_QF="$tmp"
PYTHONPATH="$here" python3 - <<'PY'
import json, os, shutil, subprocess
from qfcheck import *
tmp = os.environ["TMPDIR_QF"]; itm = FIX + "/tiny-blip2-itm"; opt = FIX + "/tiny-blip2-opt"
c = tmp + "/c"; shutil.copytree(itm + "/inputs", c)
open(c + "/broken.png", "wb").write(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
open(c.encode() + b"/caf\xe9.jpg", "wb").write(b"\xff\xd8\xff\xe0 broken")
db = tmp + "/j.db"
subprocess.run([QF, "index", "--model", itm, "--db", db, "--quiet", c], check=True, capture_output=True)
out = subprocess.run([QF, "info", "--db", db, "--failures", "--format", "json"], check=True, capture_output=True).stdout
rows = [json.loads(l) for l in out.decode("ascii").splitlines()]    # JSON escapes: plain ASCII
check(len(rows) == 2 and all(set(x) == {"path", "error"} for x in rows), f"failures JSON: {out!r}")
by = {x["path"]: x["error"] for x in rows}
check(by.get(c + "/broken.png", "").startswith("corrupt PNG") or "PNG" in by.get(c + "/broken.png", ""),
      f"broken.png error without the path: {by}")
check(any(p.startswith(c + "/caf") for p in by), f"non-UTF-8 name listed: {list(by)}")
check(all(not e.startswith(p) for p, e in by.items()), f"path not repeated in the error: {by}")
txt = subprocess.run([QF, "info", "--db", db, "--failures"], capture_output=True).stdout.decode(errors="replace").splitlines()
check(all(l.count(c + "/broken.png") <= 1 for l in txt), f"text form: path once per line: {txt}")
# caption JSON: text stripped, ids as generated
imgs = [c + "/gray_64x48.png", c + "/rgba_50x70.png"]
r = run("caption", "--model", opt, "--format", "json", *imgs)
caps = [json.loads(l) for l in r.stdout.splitlines()]
for cp in caps:
    check(cp["text"] == cp["text"].strip() and cp["text"], f"caption text stripped: {cp['text']!r}")
    check(isinstance(cp["ids"], list) and cp["ids"] and all(isinstance(i, int) for i in cp["ids"]), "ids kept")
# (the ids and the stripped HF decode against the golden file: tests/e2e/caption.sh)
r = run("search", "--db", db, "-k", "2", "--caption", "2", "--caption-model", opt, "--format", "json", "a cat")
for x in json.loads(r.stdout)["results"]:
    want = json.loads(run("caption", "--model", opt, "--format", "json", x["path"]).stdout)["text"]
    check(x["caption"] == want, f"search caption = caption's text: {x['caption']!r} vs {want!r}")
done("json_output")
PY
