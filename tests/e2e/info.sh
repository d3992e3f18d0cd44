#!/usr/bin/env bash
# info.sh - `qformer info --model` on the three fixtures (text and json): the JSON
# parameter count must equal the element count summed from the safetensors
# headers (read here, independently), parts/dtypes/files must add up, and
# the config fields must be those of config.json. Broken checkpoints exit 1
# with a message: a tensor stored with a transposed shape (named with both
# shapes; a vision tensor and an OPT tensor) and a config.json without
# vision_config (named).
set -euo pipefail
: "${QF_BIN:?}" "${QF_FIXTURES:?}"

exec python3 - "$QF_BIN" "$QF_FIXTURES" <<'PY'
import glob, json, os, re, shutil, struct, subprocess, sys, tempfile

qf, fx = sys.argv[1], sys.argv[2]
fails = []

def check(cond, what):
    if not cond:
        fails.append(what)
        print("FAIL:", what, file=sys.stderr)

def info(*args):
    r = subprocess.run([qf, "info", *args], capture_output=True)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")

def header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return n, json.loads(f.read(n))

def tensors(model_dir):
    out = {}
    for p in sorted(glob.glob(os.path.join(model_dir, "*.safetensors"))):
        if os.path.basename(p) == "expected.safetensors":
            continue
        _, h = header(p)
        for name, t in h.items():
            if name != "__metadata__":
                out[name] = (t["dtype"], t["shape"], p)
    return out

def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n

def part(name):
    if name.startswith("vision_model."): return "vision_model"
    if name.startswith("qformer.") or name == "query_tokens": return "qformer"
    if name.split(".")[0] in ("embeddings", "vision_projection", "text_projection", "itm_head"): return "heads"
    if name.split(".")[0] in ("language_model", "language_projection"): return "language_model"
    return "other"

for fixture, kind in (("tiny-blip2-itm", "retrieval"), ("tiny-blip2-opt", "captioning"),
                      ("tiny-blip2-flan-t5", "captioning")):
    d = os.path.join(fx, fixture)
    cfg = json.load(open(os.path.join(d, "config.json")))
    ts = tensors(d)

    rc, out, err = info("--model", d, "--format", "json")
    check(rc == 0, "%s: json exits 0 (stderr %r)" % (fixture, err))
    lines = out.splitlines()
    check(len(lines) == 1, "%s: json is one line (%d)" % (fixture, len(lines)))
    j = json.loads(out)
    total = sum(numel(s) for _, s, _ in ts.values())
    check(j["parameters"]["total"] == total,
          "%s: parameters.total %d == header element sum %d" % (fixture, j["parameters"]["total"], total))
    for p in ("vision_model", "qformer", "heads", "language_model", "other"):
        want = sum(numel(s) for n, (_, s, _) in ts.items() if part(n) == p)
        check(j["parameters"][p] == want, "%s: parameters.%s %d, want %d" % (fixture, p, j["parameters"][p], want))
    check(j["n_tensors"] == len(ts), "%s: n_tensors %d, want %d" % (fixture, j["n_tensors"], len(ts)))
    dts = {}
    for dt, s, _ in ts.values():
        dts.setdefault(dt, [0, 0])
        dts[dt][0] += 1
        dts[dt][1] += numel(s)
    check({k: [v["tensors"], v["params"]] for k, v in j["dtypes"].items()} == dts,
          "%s: dtypes %r, want %r" % (fixture, j["dtypes"], dts))
    files = {os.path.realpath(f["path"]): f["bytes"] for f in j["files"]}
    want_files = {os.path.realpath(p): os.path.getsize(p) for _, _, p in ts.values()}
    check(files == want_files, "%s: files %r, want %r" % (fixture, files, want_files))
    check(j["kind"] == kind, "%s: kind %r" % (fixture, j["kind"]))
    check(j["architecture"] == cfg["architectures"][0], "%s: architecture" % fixture)
    vc, qc = cfg["vision_config"], cfg["qformer_config"]
    for k in ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size",
              "image_size", "patch_size"):
        check(j["vision"][k] == vc[k], "%s: vision.%s %r, want %r" % (fixture, k, j["vision"][k], vc[k]))
    for k in ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size",
              "cross_attention_frequency", "vocab_size", "max_position_embeddings"):
        check(j["qformer"][k] == qc[k], "%s: qformer.%s %r, want %r" % (fixture, k, j["qformer"][k], qc[k]))
    check(j["qformer"]["num_query_tokens"] == cfg["num_query_tokens"], "%s: num_query_tokens" % fixture)
    check(j["image_text_hidden_size"] == cfg["image_text_hidden_size"], "%s: itc dim" % fixture)
    if kind == "captioning":
        tc = cfg["text_config"]
        keys = ("num_hidden_layers", "hidden_size", "num_attention_heads", "ffn_dim", "vocab_size")
        if tc["model_type"] == "t5":
            keys = ("num_layers", "num_decoder_layers", "d_model", "d_kv", "d_ff", "num_heads", "vocab_size",
                    "relative_attention_num_buckets", "dense_act_fn", "tie_word_embeddings")
        check(j["text"] and j["text"]["model_type"] == tc.get("model_type", "opt"), "%s: text.model_type" % fixture)
        for k in keys:
            check(j["text"] and j["text"][k] == tc[k], "%s: text.%s" % (fixture, k))
        check(j["parameters"]["language_model"] > 0 and j["parameters"]["heads"] == 0,
              "%s: OPT parameters counted, no retrieval heads" % fixture)
    else:
        check(j["text"] is None, "%s: no OPT text model" % fixture)
        check(j["parameters"]["heads"] > 0 and j["parameters"]["language_model"] == 0,
              "%s: retrieval heads counted, no OPT" % fixture)
    check(re.fullmatch(r"[0-9a-f]{32}", j["fingerprint"] or "") is not None,
          "%s: fingerprint %r is 32 hex digits" % (fixture, j["fingerprint"]))

    rc, out, err = info("--model", d)
    check(rc == 0, "%s: text exits 0 (stderr %r)" % (fixture, err))
    check(re.search(r"^fingerprint\s+%s$" % j["fingerprint"], out, re.M) is not None,
          "%s: text output shows the same fingerprint" % fixture)
    check(re.search(r"^parameters\s+%d\b" % total, out, re.M) is not None,
          "%s: text output shows the parameter count" % fixture)
    check(re.search(r"^vision\s+%d layers, hidden %d" % (vc["num_hidden_layers"], vc["hidden_size"]), out, re.M)
          is not None, "%s: text output shows the vision config" % fixture)
    if fixture == "tiny-blip2-flan-t5":
        check(re.search(r"^text \(T5\)\s+2 \+ 2 layers, d_model 32, 4 heads x 12, d_ff 64 gated gelu", out, re.M)
              is not None, "%s: text output shows the T5 config: %r" % (fixture, out))

itm = os.path.join(fx, "tiny-blip2-itm")

def writable_copy(src, dst):
    shutil.copytree(src, dst)
    for f in glob.glob(os.path.join(dst, "**"), recursive=True):
        os.chmod(f, 0o755 if os.path.isdir(f) else 0o644)

with tempfile.TemporaryDirectory() as tmp:
    # A tensor stored transposed: same byte count, so the header stays valid
    # and only the loader's shape check can catch it. Checked for a vision
    # tensor of the retrieval checkpoint (F32, one file) and an OPT tensor of
    # the captioning one (F16, second shard).
    cases = (("tiny-blip2-itm", "model.safetensors", "vision_model.encoder.layers.0.mlp.fc1.weight"),
             ("tiny-blip2-opt", "model-00002-of-00002.safetensors", "language_model.model.decoder.layers.1.fc1.weight"))
    for k, (fixture, shard, name) in enumerate(cases):
        bad = os.path.join(tmp, "bad-shape-%d" % k)
        writable_copy(os.path.join(fx, fixture), bad)
        st_path = os.path.join(bad, shard)
        n, h = header(st_path)
        check(name in h, "%s: tensor %s is in %s" % (fixture, name, shard))
        if name not in h:
            continue
        rows, cols = h[name]["shape"]
        check(rows != cols, "the swapped tensor is not square")
        h[name]["shape"] = [cols, rows]
        new = json.dumps(h, separators=(",", ":")).encode()
        check(len(new) <= n, "rewritten header fits")
        new += b" " * (n - len(new))
        with open(st_path, "r+b") as f:
            f.seek(8)
            f.write(new)
        for fmt in ("text", "json"):
            rc, out, err = info("--model", bad, "--format", fmt)
            flat = err.replace(" ", "")
            check(rc == 1, "%s bad shape (%s): exit 1, got %d" % (fixture, fmt, rc))
            check(name in err, "%s bad shape (%s): message names the tensor: %r" % (fixture, fmt, err))
            check("[%d,%d]" % (cols, rows) in flat and "[%d,%d]" % (rows, cols) in flat,
                  "%s bad shape (%s): message gives found and expected shapes: %r" % (fixture, fmt, err))
            check(out == "", "%s bad shape (%s): nothing on stdout" % (fixture, fmt))

    # A config without vision_config.
    nocfg = os.path.join(tmp, "no-vision-config")
    writable_copy(itm, nocfg)
    cfg = json.load(open(os.path.join(itm, "config.json")))
    del cfg["vision_config"]
    json.dump(cfg, open(os.path.join(nocfg, "config.json"), "w"))
    rc, out, err = info("--model", nocfg)
    check(rc == 1, "no vision_config: exit 1, got %d" % rc)
    check("vision_config" in err and "config.json" in err,
          "no vision_config: message names the field and file: %r" % err)

    rc, out, err = info("--model", os.path.join(tmp, "does-not-exist"))
    check(rc == 1 and "does-not-exist" in err, "missing folder: exit 1 naming it (%d, %r)" % (rc, err))

rc, out, err = info("--db", "/nonexistent-dir/index.db")
check(rc == 1 and err.strip() != "", "--db on a missing file: exit 1 with a message (%d, %r)" % (rc, err))
rc, out, err = info()
check(rc == 2 and err.strip() != "", "no --model/--db: usage error (%d)" % rc)
rc, out, err = info("--model", itm, "--db", "x.db")
check(rc == 2, "--model with --db: usage error (%d)" % rc)
rc, out, err = info("--model", itm, "--format", "xml")
check(rc == 2, "--format xml: usage error (%d)" % rc)
rc, out, err = info("--help")
check(rc == 0 and "example" in out and "--model" in out, "--help exits 0 with an example")

print("info.sh: %d failure(s)" % len(fails))
sys.exit(1 if fails else 0)
PY
