#!/usr/bin/env bash
# Checkpoint layouts that must behave alike:
# 1. BF16 weights in 2 shards (model.safetensors.index.json) give bit-identical
#    embed outputs to a single F32 file holding the same (BF16-rounded) values:
#    the loader upcasts exactly, shards or not.
# 2. The F16 sharded OPT fixture rewritten as one F32 file captions identically.
# 3. The newer HF BLIP-2 layout (config.json with image_token_index and an
#    <image> added token in the tokenizer) captions exactly as the older one.
set -euo pipefail
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
itm="$QF_FIXTURES/tiny-blip2-itm"; opt="$QF_FIXTURES/tiny-blip2-opt"
/usr/bin/python3 - "$itm" "$opt" "$tmp" <<'PY'
import json, os, shutil, struct, sys
import numpy as np
itm, opt, tmp = sys.argv[1:4]

def read(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n)); data = f.read()
    dt = {"F32": np.float32, "F16": np.float16}
    return {k: np.frombuffer(data[v["data_offsets"][0]:v["data_offsets"][1]], dtype=dt[v["dtype"]]).reshape(v["shape"])
            for k, v in h.items() if k != "__metadata__"}

def write(path, tensors, dtype):
    header, blobs, off = {}, [], 0
    for k, a in tensors.items():
        if dtype == "BF16":
            b = (np.ascontiguousarray(a, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()
        else:
            b = np.ascontiguousarray(a, dtype=np.float32).tobytes()
        header[k] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b); off += len(b)
    h = json.dumps(header).encode(); h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h))); f.write(h); [f.write(b) for b in blobs]

def copy_meta(src, dst):
    os.makedirs(dst)
    for f in os.listdir(src):
        if not f.endswith(".safetensors") and not f.endswith(".index.json") and f != "inputs" and not f.startswith("expected"):
            shutil.copy(os.path.join(src, f), dst)

def bf16_round(a):
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    return ((u >> 16) << 16).view(np.float32)     # truncation = what the BF16 file holds

w = {k: bf16_round(v) for k, v in read(itm + "/model.safetensors").items()}
copy_meta(itm, tmp + "/bf16"); copy_meta(itm, tmp + "/f32")
names = sorted(w); half = len(names) // 2
shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
for fn, ns in shards.items(): write(f"{tmp}/bf16/{fn}", {k: w[k] for k in ns}, "BF16")
json.dump({"metadata": {"total_size": 0}, "weight_map": {k: fn for fn, ns in shards.items() for k in ns}},
          open(tmp + "/bf16/model.safetensors.index.json", "w"))
write(tmp + "/f32/model.safetensors", w, "F32")

# OPT: one F32 file from the two F16 shards
o = {}
for fn in sorted(os.listdir(opt)):
    if fn.endswith(".safetensors") and fn.startswith("model-"): o.update(read(f"{opt}/{fn}"))
copy_meta(opt, tmp + "/opt32"); write(tmp + "/opt32/model.safetensors", {k: v.astype(np.float32) for k, v in o.items()}, "F32")
# newer layout: image_token_index + <image> added token
copy_meta(opt, tmp + "/optnew")
for fn in os.listdir(opt):
    if fn.startswith("model"): shutil.copy(f"{opt}/{fn}", tmp + "/optnew")
cfg = json.load(open(tmp + "/optnew/config.json")); cfg["image_token_index"] = 50265
json.dump(cfg, open(tmp + "/optnew/config.json", "w"), indent=2)
tc = json.load(open(tmp + "/optnew/tokenizer_config.json"))
tc.setdefault("added_tokens_decoder", {})["50265"] = {"content": "<image>", "lstrip": False, "normalized": False,
                                                     "rstrip": False, "single_word": False, "special": True}
json.dump(tc, open(tmp + "/optnew/tokenizer_config.json", "w"), indent=2)
PY
imgs=("$itm"/inputs/rgb_80x52.png "$itm"/inputs/photo_72x56.jpg "$itm"/inputs/palette_45x45.png)
args=(--text "a photo of a dog" --text "two cats" --itm --intermediates)
for d in bf16 f32; do
  "$QF_BIN" embed --model "$tmp/$d" "${imgs[@]/#/--image=}" "${args[@]}" --out "$tmp/$d.safetensors"
done
/usr/bin/python3 - "$tmp" <<'PY'
import json, struct, sys
tmp = sys.argv[1]
def payload(p):
    with open(p, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n)); d = f.read()
    return {k: d[v["data_offsets"][0]:v["data_offsets"][1]] for k, v in h.items() if k != "__metadata__"}
a, b = payload(f"{tmp}/bf16.safetensors"), payload(f"{tmp}/f32.safetensors")
bad = [k for k in a if a[k] != b[k]]
print("bf16 sharded vs f32 single:", "bit-identical" if not bad and a.keys() == b.keys() else f"differ in {bad}")
sys.exit(1 if bad or a.keys() != b.keys() else 0)
PY
# --dtype bf16 (BF16 ViT arithmetic): the same outputs within 1e-2, not bit-identical
"$QF_BIN" embed --model "$tmp/f32" "${imgs[@]/#/--image=}" "${args[@]}" --dtype bf16 --out "$tmp/vbf16.safetensors"
PYTHONPATH="$(cd "$(dirname "$0")" && pwd)" /usr/bin/python3 - "$tmp" <<'PY'
import sys
import numpy as np
from qfcheck import read_safetensors
tmp = sys.argv[1]
a, b = read_safetensors(f"{tmp}/vbf16.safetensors"), read_safetensors(f"{tmp}/f32.safetensors")
for k in ("image_feats", "text_feats", "itc_scores", "itm_logits"):
    d = float(np.max(np.abs(a[k].astype(np.float64) - b[k])))
    assert d <= 1e-2, (k, d)
assert np.any(a["image_feats"] != b["image_feats"]), "bf16 gave the f32 bits"
assert np.array_equal(a["text_feats"], b["text_feats"]), "text side must stay f32"
print("embed --dtype bf16: within 1e-2 of f32")
PY
prompt="Question: what is shown? Answer:"
for d in "$opt" "$tmp/opt32" "$tmp/optnew"; do
  "$QF_BIN" caption --model "$d" --format json --max-new-tokens 16 --num-beams 3 --prompt "$prompt" "${imgs[@]}" | sed 's/"image":"[^"]*",//' > "$tmp/cap.$(basename "$d")"
done
cmp "$tmp/cap.tiny-blip2-opt" "$tmp/cap.opt32" && echo "opt F16 sharded vs F32 single: same captions"
cmp "$tmp/cap.tiny-blip2-opt" "$tmp/cap.optnew" && echo "older vs newer (image_token_index) layout: same captions"
"$QF_BIN" tokenize --model "$tmp/optnew" --format json -- "$prompt" | grep -q '"ids": \[2, 45641, 35, 99, 16, 2343, 116, 31652, 35\]'
echo "dtype_layouts: all checks passed"
