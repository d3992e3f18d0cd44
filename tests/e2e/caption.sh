#!/usr/bin/env bash
# `qformer caption` on the tiny OPT fixture: greedy and beam-3, with and
# without the prompt, must give expected.json's ids and decoded texts for
# every input image (PNG of every mode and the JPEG).
set -euo pipefail
fx="$QF_FIXTURES/tiny-blip2-opt"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
prompt=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["prompt"]["text"])' "$fx/expected.json")
imgs=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("\n".join(sys.argv[2]+"/"+i["file"] for i in d["images"]))' "$fx/expected.json" "$fx")
mapfile -t files <<<"$imgs"
"$QF_BIN" caption --model "$fx" --format json --max-new-tokens 16 "${files[@]}" > "$tmp/greedy.noprompt"
"$QF_BIN" caption --model "$fx" --format json --max-new-tokens 16 --prompt "$prompt" "${files[@]}" > "$tmp/greedy.prompt"
"$QF_BIN" caption --model "$fx" --format json --max-new-tokens 16 --num-beams 3 "${files[@]}" > "$tmp/beam.noprompt"
"$QF_BIN" caption --model "$fx" --format json --max-new-tokens 16 --num-beams 3 --prompt "$prompt" "${files[@]}" > "$tmp/beam.prompt"
# reduced-precision language model: bf16 gives the same greedy captions,
# int8 (W8A8) captions every image; its agreement with f32 is printed
"$QF_BIN" caption --model "$fx" --format json --max-new-tokens 16 --dtype bf16 "${files[@]}" > "$tmp/bf16"
"$QF_BIN" caption --model "$fx" --format json --max-new-tokens 16 --dtype int8 "${files[@]}" > "$tmp/int8"
if "$QF_BIN" caption --model "$fx" --dtype fp8 "${files[0]}" 2> "$tmp/err"; then echo "--dtype fp8 accepted"; exit 1; fi
grep -q "f32, bf16 or int8" "$tmp/err"
python3 - "$tmp" <<'PY'
import json, sys
tmp = sys.argv[1]
f32 = [json.loads(l) for l in open(f"{tmp}/greedy.noprompt")]
bf16 = [json.loads(l) for l in open(f"{tmp}/bf16")]
int8 = [json.loads(l) for l in open(f"{tmp}/int8")]
assert bf16 == f32, "bf16 captions differ from f32"
assert len(int8) == len(f32) and all(r["ids"] for r in int8), "int8 did not caption every image"
print(f"int8 captions identical to f32: {sum(a == b for a, b in zip(int8, f32))} of {len(f32)}")
PY
# text format: one line per image, tab-separated
"$QF_BIN" caption --model "$fx" --max-new-tokens 4 "${files[0]}" | grep -q "^${files[0]}	"
python3 - "$fx/expected.json" "$tmp" <<'PY'
import json, sys
exp = json.load(open(sys.argv[1])); tmp = sys.argv[2]
fail = 0
for mode, key in (("greedy", "greedy"), ("beam", "beam")):
    for pr in ("noprompt", "prompt"):
        got = [json.loads(l) for l in open(f"{tmp}/{mode}.{pr}")]
        assert len(got) == len(exp["captions"]), (mode, pr, len(got))
        for g, c in zip(got, exp["captions"]):
            e = c[pr]
            # text as users print it: HF's decode, stripped (the examples' .strip()); ids untouched
            ids = e[f"{key}_ids"]; text = e[f"{key}_text"].strip()
            if g["ids"] != ids or g["text"] != text:
                print(f"FAIL {mode}.{pr} image {c['image']}: got {g['ids']} {g['text']!r}, expected {ids} {text!r}")
                fail += 1
n = 4 * len(exp["captions"])
print(f"{n - fail} passed, {fail} failed")
sys.exit(1 if fail else 0)
PY
# errors: a missing image names the file and exits 1, a retrieval checkpoint is refused
if "$QF_BIN" caption --model "$fx" "$tmp/nope.png" 2> "$tmp/err"; then echo "missing image accepted"; exit 1; fi
grep -q "nope.png" "$tmp/err"
if "$QF_BIN" caption --model "$QF_FIXTURES/tiny-blip2-itm" "${files[0]}" 2> "$tmp/err"; then echo "retrieval model accepted"; exit 1; fi
grep -q "not a captioning checkpoint" "$tmp/err"
