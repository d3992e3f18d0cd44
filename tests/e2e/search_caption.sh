#!/usr/bin/env bash
# search --caption: the first N results get the captions `qformer caption`
# gives for the same files, and a repeated search serves them from the
# caption cache in the database (same text, no recomputation needed).
set -euo pipefail
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/c"
cp "$QF_FIXTURES"/tiny-blip2-itm/inputs/*.png "$tmp/c/"
itm="$QF_FIXTURES/tiny-blip2-itm"; opt="$QF_FIXTURES/tiny-blip2-opt"
"$QF_BIN" index --model "$itm" --db "$tmp/s.db" --quiet "$tmp/c" >/dev/null
"$QF_BIN" search --db "$tmp/s.db" -k 4 --caption 3 --caption-model "$opt" --format json "two cats" > "$tmp/a.json"
"$QF_BIN" search --db "$tmp/s.db" -k 4 --caption 3 --caption-model "$opt" --format json "two cats" > "$tmp/b.json"
"$QF_BIN" search --db "$tmp/s.db" -k 4 --caption 3 --caption-model "$opt" --caption-dtype int8 --format json "two cats" > "$tmp/c.json"
/usr/bin/python3 - "$tmp" "$QF_BIN" "$opt" <<'PY'
import json, sqlite3, subprocess, sys
tmp, qf, opt = sys.argv[1:4]
a = json.load(open(f"{tmp}/a.json")); b = json.load(open(f"{tmp}/b.json"))
fails = []
res = a["results"]
if [r["caption"] is not None for r in res] != [True, True, True, False]: fails.append("captions on the first 3 only")
for r in res[:3]:
    out = subprocess.run([qf, "caption", "--model", opt, "--format", "json", r["path"]], capture_output=True, text=True, check=True)
    want = json.loads(out.stdout)["text"]
    if r["caption"] != want: fails.append(f"{r['path']}: {r['caption']!r} != caption's {want!r}")
if a != b: fails.append("repeated search differs")
# int8 captions: those of `caption --dtype int8`, cached apart from the f32 ones
c = json.load(open(f"{tmp}/c.json"))
for r in c["results"][:3]:
    out = subprocess.run([qf, "caption", "--model", opt, "--dtype", "int8", "--format", "json", r["path"]],
                         capture_output=True, text=True, check=True)
    if r["caption"] != json.loads(out.stdout)["text"]: fails.append(f"int8 {r['path']}: {r['caption']!r}")
n = sqlite3.connect(f"{tmp}/s.db").execute("SELECT count(*) FROM captions").fetchone()[0]
if n != 6: fails.append(f"{n} cached captions, expected 3 f32 + 3 int8")
for f in fails: print("FAIL:", f)
print("search_caption:", "all checks passed" if not fails else f"{len(fails)} failed")
sys.exit(1 if fails else 0)
PY
