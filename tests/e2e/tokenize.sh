#!/usr/bin/env bash
# tokenize.sh - `qformer tokenize` on the fixture texts: --format json must
# give expected.json's input_ids (and echo each TEXT), --format text the same
# ids; --help exits 0; a captioning checkpoint, a missing --model and invalid
# UTF-8 exit non-zero with a message.
set -euo pipefail
: "${QF_BIN:?}" "${QF_FIXTURES:?}"

exec python3 - "$QF_BIN" "$QF_FIXTURES" <<'PY'
import json, subprocess, sys

qf, fx = sys.argv[1], sys.argv[2]
itm, opt = fx + "/tiny-blip2-itm", fx + "/tiny-blip2-opt"
fails = []

def check(cond, what):
    if not cond:
        fails.append(what)
        print("FAIL:", what, file=sys.stderr)

def run(*args):
    return subprocess.run([qf, "tokenize", *args], capture_output=True)

texts = json.load(open(itm + "/expected.json", encoding="utf-8"))["texts"]
inputs = [t["text"] for t in texts]
want = [t["input_ids"] for t in texts]

r = run("--model", itm, "--format", "json", "--", *inputs)
check(r.returncode == 0, "json run exits 0 (stderr: %r)" % r.stderr.decode(errors="replace"))
lines = r.stdout.decode("utf-8").splitlines()
check(len(lines) == len(texts), "one json line per TEXT (%d vs %d)" % (len(lines), len(texts)))
for i, (line, w, t) in enumerate(zip(lines, want, inputs)):
    obj = json.loads(line)
    check(list(obj) == ["text", "ids"], "text %d: keys are text, ids: %r" % (i, list(obj)))
    check(obj.get("text") == t, "text %d: echoed text %r" % (i, obj.get("text")))
    check(obj.get("ids") == w, "text %d: ids %r, want %r" % (i, obj.get("ids"), w))

r = run("--model", itm, *inputs[:2])
check(r.returncode == 0, "text format exits 0")
got = [[int(x) for x in l.split()] for l in r.stdout.decode().splitlines()]
check(got == want[:2], "text format ids %r" % got)

r = run("--model=" + itm, "--format=json", "", "-5 degrees")   # '-' TEXT after the first TEXT
check(r.returncode == 0, "empty TEXT + dash TEXT exit 0: %r" % r.stderr)
objs = [json.loads(l) for l in r.stdout.decode().splitlines()]
check(len(objs) == 2 and objs[0]["ids"] == want[5], "empty text -> [CLS] [SEP]")
check(len(objs) == 2 and objs[1]["text"] == "-5 degrees" and len(objs[1]["ids"]) > 2, "dash text tokenized")

r = run("--help")
check(r.returncode == 0 and b"usage: qformer tokenize" in r.stdout, "--help")

bpe = json.load(open(opt + "/expected.json", encoding="utf-8"))["bpe"]
r = run("--model", opt, "--format", "json", "--", *[e["text"] for e in bpe])
objs = [json.loads(l) for l in r.stdout.decode("utf-8").splitlines()]
check(r.returncode == 0 and [o["ids"] for o in objs] == [e["input_ids"] for e in bpe]
      and [o["text"] for o in objs] == [e["text"] for e in bpe], "captioning checkpoint: OPT BPE ids")

r = run("hello")
check(r.returncode == 2 and b"--model" in r.stderr, "missing --model is a usage error")
r = run("--model", itm)
check(r.returncode == 2, "no TEXT is a usage error")
r = run("--model", itm, "--format", "xml", "hi")
check(r.returncode == 2, "bad --format is a usage error")
r = run("--model", fx + "/does-not-exist", "hi")
check(r.returncode == 1 and b"does-not-exist" in r.stderr, "missing model folder named")

r = subprocess.run([qf.encode(), b"tokenize", b"--model", itm.encode(), b"ok", b"caf\xe9"], capture_output=True)
check(r.returncode == 1 and b"UTF-8" in r.stderr and b"TEXT 2" in r.stderr,
      "invalid UTF-8 refused: %r" % r.stderr)

if fails:
    print("%d check(s) failed" % len(fails), file=sys.stderr)
    sys.exit(1)
print("tokenize e2e: all checks passed")
PY
