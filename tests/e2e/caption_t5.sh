#!/usr/bin/env bash
# caption_t5.sh - the Flan-T5 checkpoint through the CLI
# (tests/fixtures/tiny-blip2-flan-t5): `caption` greedy and beam-3, with and
# without the prompt, gives expected.json's ids (decoder start excluded) and
# texts for every image; `tokenize` gives the SentencePiece ids of every
# fixture string (`</s>` = 1 last) in json and text form; `--dtype bf16|int8`
# caption every image; `search --caption` with the T5 checkpoint gives
# `caption`'s texts and serves a repeat from the database's caption cache; a
# text_config of another model_type is refused by name.
set -euo pipefail
: "${QF_BIN:?}" "${QF_FIXTURES:?}"
fx="$QF_FIXTURES/tiny-blip2-flan-t5"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
prompt=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["prompt"]["text"])' "$fx/expected.json")
imgs=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("\n".join(sys.argv[2]+"/"+i["file"] for i in d["images"]))' "$fx/expected.json" "$fx")
mapfile -t files <<<"$imgs"
"$QF_BIN" caption --model "$fx" --format json --max-new-tokens 16 "${files[@]}" > "$tmp/greedy.noprompt"
"$QF_BIN" caption --model "$fx" --format json --max-new-tokens 16 --prompt "$prompt" "${files[@]}" > "$tmp/greedy.prompt"
"$QF_BIN" caption --model "$fx" --format json --max-new-tokens 16 --num-beams 3 "${files[@]}" > "$tmp/beam.noprompt"
"$QF_BIN" caption --model "$fx" --format json --max-new-tokens 16 --num-beams 3 --prompt "$prompt" "${files[@]}" > "$tmp/beam.prompt"
"$QF_BIN" caption --model "$fx" --format json --max-new-tokens 16 --dtype bf16 "${files[@]}" > "$tmp/bf16"
"$QF_BIN" caption --model "$fx" --format json --max-new-tokens 16 --dtype int8 "${files[@]}" > "$tmp/int8"
python3 - "$fx" "$tmp" "$QF_BIN" <<'PY'
import json, subprocess, sys
fx, tmp, qf = sys.argv[1:4]
exp = json.load(open(f"{fx}/expected.json", encoding="utf-8"))
fails = []
for mode in ("greedy", "beam"):
    for pr in ("noprompt", "prompt"):
        got = [json.loads(l) for l in open(f"{tmp}/{mode}.{pr}")]
        if len(got) != len(exp["captions"]):
            fails.append(f"{mode}.{pr}: {len(got)} lines"); continue
        for g, c in zip(got, exp["captions"]):
            ids, text = c[pr][f"{mode}_ids"], c[pr][f"{mode}_text"]
            if g["ids"] != ids or g["text"] != text:
                fails.append(f"{mode}.{pr} image {c['image']}: got {g['ids']} {g['text']!r}, expected {ids} {text!r}")
f32 = [json.loads(l) for l in open(f"{tmp}/greedy.noprompt")]
for wt in ("bf16", "int8"):
    got = [json.loads(l) for l in open(f"{tmp}/{wt}")]
    if len(got) != len(f32) or not all(r["ids"] for r in got): fails.append(f"{wt} did not caption every image")
    print(f"{wt} captions identical to f32: {sum(a == b for a, b in zip(got, f32))} of {len(f32)}")
# tokenizer: every fixture string, json and text
spm = exp["spm"]
inputs = [s["text"] for s in spm]
r = subprocess.run([qf, "tokenize", "--model", fx, "--format", "json", "--", *inputs], capture_output=True)
if r.returncode: fails.append(f"tokenize json: exit {r.returncode} {r.stderr!r}")
lines = r.stdout.decode("utf-8").splitlines()
if [json.loads(l) for l in lines] != [{"text": s["text"], "ids": s["input_ids"]} for s in spm]:
    fails.append(f"tokenize json: {lines}")
r = subprocess.run([qf, "tokenize", "--model", fx, "--", *inputs], capture_output=True)
if r.stdout.decode().splitlines() != [" ".join(map(str, s["input_ids"])) for s in spm]:
    fails.append("tokenize text ids differ")
r = subprocess.run([qf, "tokenize", "--model", fx, b"bad \xff utf-8"], capture_output=True)
if r.returncode != 1 or b"UTF-8" not in r.stderr: fails.append(f"invalid UTF-8: {r.returncode} {r.stderr!r}")
for f in fails: print("FAIL:", f)
print("caption_t5:", "all checks passed" if not fails else f"{len(fails)} failed")
sys.exit(1 if fails else 0)
PY
# search --caption with the T5 checkpoint: caption's texts, then from the cache
mkdir -p "$tmp/c"
cp "$QF_FIXTURES"/tiny-blip2-itm/inputs/*.png "$tmp/c/"
"$QF_BIN" index --model "$QF_FIXTURES/tiny-blip2-itm" --db "$tmp/s.db" --quiet "$tmp/c" >/dev/null
"$QF_BIN" search --db "$tmp/s.db" -k 3 --caption 2 --caption-model "$fx" --format json "a cat" > "$tmp/a.json"
"$QF_BIN" search --db "$tmp/s.db" -k 3 --caption 2 --caption-model "$fx" --format json "a cat" > "$tmp/b.json"
python3 - "$tmp" "$QF_BIN" "$fx" <<'PY'
import json, sqlite3, subprocess, sys
tmp, qf, fx = sys.argv[1:4]
a = json.load(open(f"{tmp}/a.json")); b = json.load(open(f"{tmp}/b.json"))
fails = []
res = a["results"]
if [r["caption"] is not None for r in res] != [True, True, False]: fails.append("captions on the first 2 only")
for r in res[:2]:
    out = subprocess.run([qf, "caption", "--model", fx, "--format", "json", r["path"]], capture_output=True, text=True, check=True)
    if r["caption"] != json.loads(out.stdout)["text"]: fails.append(f"{r['path']}: {r['caption']!r}")
if a != b: fails.append("repeated search differs")
n = sqlite3.connect(f"{tmp}/s.db").execute("SELECT count(*) FROM captions").fetchone()[0]
if n != 2: fails.append(f"{n} cached captions, expected 2")
for f in fails: print("FAIL:", f)
sys.exit(1 if fails else 0)
PY
# another language model family is refused by name
cp -r "$fx" "$tmp/llama"; chmod -R u+w "$tmp/llama"
python3 - "$tmp/llama/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["text_config"]["model_type"] = "llama"
json.dump(c, open(sys.argv[1], "w"))
PY
if "$QF_BIN" caption --model "$tmp/llama" "${files[0]}" 2> "$tmp/err"; then echo "llama text_config accepted"; exit 1; fi
grep -q "model_type 'llama' is not supported" "$tmp/err"
# spiece.model missing: named
rm "$tmp/llama/spiece.model"
python3 - "$tmp/llama/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["text_config"]["model_type"] = "t5"
json.dump(c, open(sys.argv[1], "w"))
PY
if "$QF_BIN" caption --model "$tmp/llama" "${files[0]}" 2> "$tmp/err"; then echo "missing spiece.model accepted"; exit 1; fi
grep -q "spiece.model" "$tmp/err"
echo "caption_t5.sh: ok"
