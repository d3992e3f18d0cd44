#!/usr/bin/env bash
# pull.sh - `qformer pull` against a local hub (tests/e2e/hubserver.py serving
# the fixtures in the hub's URL layout): files land byte-identical in the
# hub-style cache (weights, configs, tokenizer; .bin/onnx/README skipped), a
# second run downloads nothing, an interrupted download resumes with a Range
# request (next run, automatic retry, and a server that ignores Range), a
# corrupted byte is caught by SHA-256 / git blob id and the file deleted, unknown
# repos/revisions and gated repos (HF_TOKEN) give actionable messages, --dir
# works, a TTY gets a progress bar, a Flan-T5 repo brings its spiece.model,
# and --model ORG/NAME resolves from the
# cache for info/tokenize/embed/caption (a missing one names the pull to run).
set -euo pipefail
: "${QF_BIN:?}" "${QF_FIXTURES:?}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

exec python3 - "$QF_BIN" "$QF_FIXTURES" "$HERE/hubserver.py" <<'PY'
import fcntl, glob, json, os, pty, re, select, shutil, struct, subprocess, sys, tempfile, termios, time

qf, fx, server_py = sys.argv[1:4]
fails = []

def check(cond, what):
    if not cond:
        fails.append(what)
        print("FAIL:", what, file=sys.stderr)
    return cond

# The selection rule, written out independently of embed/hub.c.
KEEP = {"config.json", "generation_config.json", "preprocessor_config.json", "vocab.txt", "vocab.json",
        "merges.txt", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
        "tokenizer.json", "model.safetensors.index.json", "spiece.model"}
def wanted(rel):
    return "/" not in rel and (rel in KEEP or rel.endswith(".safetensors"))

tmp = tempfile.mkdtemp(prefix="qf-pull-")
servers = []

def make_repo(fixture):
    """A hub repo = the fixture + files a real repo has that pull must skip."""
    d = os.path.join(tmp, "repos", fixture)
    shutil.copytree(os.path.join(fx, fixture), d)
    for f in glob.glob(os.path.join(d, "**"), recursive=True):
        os.chmod(f, 0o755 if os.path.isdir(f) else 0o644)
    open(os.path.join(d, "pytorch_model.bin"), "wb").write(os.urandom(3000))
    open(os.path.join(d, "README.md"), "w").write("# model card\n")
    os.makedirs(os.path.join(d, "onnx"))
    open(os.path.join(d, "onnx", "model.onnx"), "wb").write(b"onnx" * 100)
    os.makedirs(os.path.join(d, "sub"))
    open(os.path.join(d, "sub", "config.json"), "w").write("{}")
    return d

ITM = make_repo("tiny-blip2-itm")
OPT = make_repo("tiny-blip2-opt")
T5 = make_repo("tiny-blip2-flan-t5")
REPO_ITM, REPO_OPT, REPO_T5 = "qf-test/tiny-blip2-itm", "qf-test/tiny-blip2-opt", "qf-test/tiny-blip2-flan-t5"

def want_files(d):
    out = {}
    for p in glob.glob(os.path.join(d, "**"), recursive=True):
        rel = os.path.relpath(p, d)
        if os.path.isfile(p) and wanted(rel):
            out[rel] = open(p, "rb").read()
    return out

def start(*extra):
    n = len(servers)
    port_file = os.path.join(tmp, "port%d" % n)
    log = os.path.join(tmp, "server%d.log" % n)
    proc = subprocess.Popen([sys.executable, server_py, "--port-file", port_file, "--log", log,
                             "--repo", REPO_ITM + "=" + ITM, "--repo", REPO_OPT + "=" + OPT,
                             "--repo", REPO_T5 + "=" + T5, *extra])
    servers.append(proc)
    for _ in range(200):
        if os.path.exists(port_file):
            break
        if proc.poll() is not None:
            sys.exit("hubserver.py exited with %d" % proc.returncode)
        time.sleep(0.05)
    else:
        sys.exit("hubserver.py did not start")
    return "http://127.0.0.1:%s" % open(port_file).read().strip(), log

def stop_all():
    for p in servers:
        if p.poll() is None:
            p.terminate()
            p.wait()

def base_env(cache):
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT", "HF_HUB_CACHE", "QF_CACHE")}
    env["HF_HOME"] = os.path.join(tmp, "hf-home")   # no stray login token
    env["QF_CACHE"] = cache
    return env

def run(args, cache, endpoint=None, extra_env=None, timeout=120):
    env = base_env(cache)
    if endpoint:
        env["HF_ENDPOINT"] = endpoint
    env.update(extra_env or {})
    r = subprocess.run([qf, *args], capture_output=True, env=env, timeout=timeout)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")

def log_lines(log):
    return open(log).read().splitlines() if os.path.exists(log) else []

def same_files(folder, repo_dir, what):
    want = want_files(repo_dir)
    got = {}
    for p in glob.glob(os.path.join(folder, "**"), recursive=True):
        if os.path.isfile(p):
            got[os.path.relpath(p, folder)] = open(p, "rb").read()
    check(sorted(got) == sorted(want), "%s: file set %s, want %s" % (what, sorted(got), sorted(want)))
    for k in want:
        if k in got:
            check(got[k] == want[k], "%s: %s is byte-identical to the fixture" % (what, k))

try:
    # ---- a plain pull into the cache --------------------------------------------
    url, log = start()
    cache = os.path.join(tmp, "cache")
    rc, out, err = run(["pull", REPO_ITM], cache, url)
    check(rc == 0, "pull exits 0 (rc %d, stderr %r)" % (rc, err))
    repo_dir = os.path.join(cache, "models--qf-test--tiny-blip2-itm")
    ref = open(os.path.join(repo_dir, "refs", "main")).read().strip() if os.path.exists(
        os.path.join(repo_dir, "refs", "main")) else ""
    check(re.fullmatch(r"[0-9a-f]{40}", ref) is not None, "refs/main holds the commit sha: %r" % ref)
    snap = os.path.join(repo_dir, "snapshots", ref)
    check(out.strip() == snap, "stdout is the snapshot folder: %r, want %r" % (out.strip(), snap))
    same_files(snap, ITM, "cache pull")
    check("pytorch_model.bin" not in os.listdir(snap) and "README.md" not in os.listdir(snap),
          "pytorch_model.bin and README.md skipped")
    lines = log_lines(log)
    check(any("/api/models/%s/revision/main?blobs=true" % REPO_ITM in l for l in lines), "listing asked with blobs=true")
    check(any("/resolve/%s/model.safetensors " % ref in l and "-> 302" in l for l in lines),
          "files resolved at the listed commit; the LFS file answered with a redirect")
    check(any(l.startswith("GET /_lfs/") and "-> 200" in l for l in lines), "redirect followed to /_lfs/")
    check("auth=yes" not in "\n".join(lines), "no Authorization header without a token")
    check("[1/" in err and "done" in err, "plain progress lines on a non-TTY: %r" % err[:300])
    check("\r" not in err, "no carriage returns on a non-TTY")

    # ---- second run downloads nothing -------------------------------------------
    n_before = len(log_lines(log))
    rc, out2, err = run(["pull", REPO_ITM], cache, url)
    new = log_lines(log)[n_before:]
    check(rc == 0 and out2 == out, "second pull exits 0 with the same folder (rc %d)" % rc)
    check(len(new) == 1 and "/api/models/" in new[0], "second pull only lists the repo: %r" % new)
    check("already present" in err, "second pull says files are already present")

    rc, out3, err = run(["pull", REPO_ITM, "--revision", ref], cache, url)
    check(rc == 0 and out3 == out and "already present" in err, "--revision COMMIT finds the same snapshot (%r)" % err)

    # ---- --model ORG/NAME from the cache --------------------------------------------
    rc, j_cache, err = run(["info", "--model", REPO_ITM, "--format", "json"], cache)
    check(rc == 0, "info --model %s from the cache exits 0 (%r)" % (REPO_ITM, err))
    rc, j_fix, _ = run(["info", "--model", os.path.join(fx, "tiny-blip2-itm"), "--format", "json"], cache)
    if rc == 0 and j_cache:
        a, b = json.loads(j_cache), json.loads(j_fix)
        check(a["fingerprint"] == b["fingerprint"] and a["parameters"] == b["parameters"],
              "info from the cache matches info on the fixture")
        check(a["model"] == snap, "info reports the snapshot folder: %r" % a["model"])
    rc, tok_cache, err = run(["tokenize", "--model", REPO_ITM, "--format", "json", "a cat on a mat"], cache)
    rc2, tok_fix, _ = run(["tokenize", "--model", os.path.join(fx, "tiny-blip2-itm"), "--format", "json",
                           "a cat on a mat"], cache)
    check(rc == 0 and rc2 == 0 and tok_cache == tok_fix, "tokenize --model ORG/NAME matches the folder (%r)" % err)
    emb = os.path.join(tmp, "emb.safetensors")
    rc, _, err = run(["embed", "--model", REPO_ITM, "--text", "a cat", "--out", emb], cache)
    check(rc == 0 and os.path.exists(emb) and os.path.getsize(emb) > 0, "embed --model ORG/NAME exits 0 (%r)" % err)

    # missing repo: every --model option names the pull to run
    for args in (["embed", "--model", "missing/repo", "--text", "a", "--out", os.path.join(tmp, "x.st")],
                 ["info", "--model", "missing/repo"],
                 ["tokenize", "--model", "missing/repo", "a"],
                 ["caption", "--model", "missing/repo", os.path.join(fx, "tiny-blip2-opt/inputs/rgb_80x52.png")]):
        rc, out_m, err = run(args, cache)
        check(rc == 1 and "qformer pull missing/repo" in err,
              "%s --model missing/repo: exit 1 naming the pull (rc %d, %r)" % (args[0], rc, err))
        check(out_m == "", "%s --model missing/repo: nothing on stdout" % args[0])
    # no refs/main: the only snapshot is used; with two, the message lists them
    c1 = os.path.join(tmp, "cache-refs")
    shutil.copytree(cache, c1)
    os.remove(os.path.join(c1, "models--qf-test--tiny-blip2-itm", "refs", "main"))
    rc, _, err = run(["info", "--model", REPO_ITM], c1)
    check(rc == 0, "without refs/main the only snapshot is used (%r)" % err)
    shutil.copytree(os.path.join(c1, "models--qf-test--tiny-blip2-itm", "snapshots", ref),
                    os.path.join(c1, "models--qf-test--tiny-blip2-itm", "snapshots", "0" * 40))
    rc, _, err = run(["info", "--model", REPO_ITM], c1)
    check(rc == 1 and "revisions are cached" in err and ref in err, "two snapshots, no main: named (%r)" % err)
    rc, _, err = run(["info", "--model", os.path.join(tmp, "no-such-folder")], cache)
    check(rc == 1 and "no-such-folder" in err, "a missing path is still reported as a path (%r)" % err)

    # ---- sharded checkpoint, --dir and --endpoint ---------------------------------
    dir_opt = os.path.join(tmp, "opt-dir")
    rc, out, err = run(["pull", REPO_OPT, "--dir", dir_opt, "--endpoint", url + "/"], os.path.join(tmp, "cache-unused"))
    check(rc == 0, "pull --dir --endpoint exits 0 (%r)" % err)
    check(out.strip() == dir_opt, "stdout is the --dir folder")
    same_files(dir_opt, OPT, "--dir pull")
    check(not os.path.exists(os.path.join(tmp, "cache-unused", "models--qf-test--tiny-blip2-opt")),
          "--dir leaves the cache alone")
    # the same repo into the cache, then caption through ORG/NAME == caption of the folder
    rc, _, err = run(["pull", REPO_OPT, "--quiet"], cache, url)
    check(rc == 0 and err == "", "pull --quiet prints nothing on stderr (%r)" % err)
    img = os.path.join(fx, "tiny-blip2-opt", "inputs", "rgb_80x52.png")
    rc, cap_cache, err = run(["caption", "--model", REPO_OPT, "--format", "json", "--max-new-tokens", "5", img], cache)
    rc2, cap_dir, _ = run(["caption", "--model", dir_opt, "--format", "json", "--max-new-tokens", "5", img], cache)
    check(rc == 0 and rc2 == 0 and json.loads(cap_cache or "{}").get("ids") == json.loads(cap_dir or "{}").get("ids"),
          "caption --model ORG/NAME gives the ids of the folder (%r)" % err)
    # a Flan-T5 checkpoint: spiece.model comes along, and it captions from the cache
    dir_t5 = os.path.join(tmp, "t5-dir")
    rc, out, err = run(["pull", REPO_T5, "--dir", dir_t5, "--quiet"], cache, url)
    check(rc == 0, "pull of the T5 checkpoint exits 0 (%r)" % err)
    same_files(dir_t5, T5, "T5 pull")
    check(os.path.isfile(os.path.join(dir_t5, "spiece.model")), "T5 pull fetched spiece.model")
    img = os.path.join(fx, "tiny-blip2-flan-t5", "inputs", "rgb_80x52.png")
    rc, cap_t5, err = run(["caption", "--model", dir_t5, "--format", "json", "--max-new-tokens", "16", img], cache)
    want_ids = json.load(open(os.path.join(fx, "tiny-blip2-flan-t5", "expected.json")))["captions"][0]["noprompt"]["greedy_ids"]
    check(rc == 0 and json.loads(cap_t5 or "{}").get("ids") == want_ids, "caption of the pulled T5 checkpoint (%r)" % err)

    # ---- interrupted download, resumed by the next run ----------------------------
    url, log = start("--cut", "model.safetensors")
    c2 = os.path.join(tmp, "cache2")
    rc, _, err = run(["pull", REPO_ITM, "--retries", "0"], c2, url)
    check(rc == 1, "cut connection with --retries 0: exit 1 (rc %d)" % rc)
    check("model.safetensors" in err and "again" in err, "message says to run again: %r" % err)
    parts = glob.glob(os.path.join(c2, "**", "model.safetensors.incomplete"), recursive=True)
    full = os.path.getsize(os.path.join(ITM, "model.safetensors"))
    part_size = os.path.getsize(parts[0]) if parts else -1
    check(len(parts) == 1 and 0 < part_size < full, "the partial file is kept (%d of %d bytes)" % (part_size, full))
    check(not glob.glob(os.path.join(c2, "**", "model.safetensors"), recursive=True), "no final file after the cut")
    n_before = len(log_lines(log))
    rc, out, err = run(["pull", REPO_ITM], c2, url)
    check(rc == 0, "second run completes (rc %d, %r)" % (rc, err))
    new = log_lines(log)[n_before:]
    check(any("range=bytes=%d-" % part_size in l and "-> 206" in l for l in new),
          "the second run asks for Range: bytes=%d- and gets 206: %r" % (part_size, new))
    check("resuming" in err, "the second run says it resumes: %r" % err)
    same_files(out.strip(), ITM, "resumed pull")
    check(not glob.glob(os.path.join(c2, "**", "*.incomplete"), recursive=True), "no .incomplete left")

    # ---- interrupted download, retried within the same run -------------------------
    url, log = start("--cut", "model.safetensors")
    c3 = os.path.join(tmp, "cache3")
    rc, out, err = run(["pull", REPO_ITM], c3, url)
    check(rc == 0 and "retrying" in err, "a broken transfer is retried in the same run (rc %d, %r)" % (rc, err))
    check(any("range=bytes=" in l and "-> 206" in l for l in log_lines(log)), "the retry uses a Range request")
    same_files(out.strip(), ITM, "retried pull")

    # ---- a server that ignores Range: the file starts over -------------------------
    url, log = start("--cut", "model.safetensors", "--no-range")
    c4 = os.path.join(tmp, "cache4")
    rc, _, _ = run(["pull", REPO_ITM, "--retries", "0"], c4, url)
    check(rc == 1, "no-range server: first run cut (rc %d)" % rc)
    n_before = len(log_lines(log))
    rc, out, err = run(["pull", REPO_ITM], c4, url)
    check(rc == 0, "no-range server: second run completes (%r)" % err)
    check(any("range=bytes=" in l and "-> 200" in l for l in log_lines(log)[n_before:]),
          "no-range server: the Range request got 200 and the file started over")
    if rc == 0:
        same_files(out.strip(), ITM, "no-range pull")

    # ---- corrupted bytes are caught --------------------------------------------------
    url, log = start("--corrupt", "model.safetensors")
    c5 = os.path.join(tmp, "cache5")
    rc, _, err = run(["pull", REPO_ITM], c5, url)
    check(rc == 1, "corrupted LFS file: exit 1 (rc %d)" % rc)
    check("model.safetensors" in err and "SHA-256" in err, "the message names the file and SHA-256: %r" % err)
    check("deleted" in err, "the message says the corrupted file was deleted")
    check(not glob.glob(os.path.join(c5, "**", "model.safetensors*"), recursive=True),
          "the corrupted model.safetensors is gone (final and .incomplete)")
    url2, _ = start("--corrupt", "vocab.txt")
    rc, _, err = run(["pull", REPO_ITM], os.path.join(tmp, "cache7"), url2)
    check(rc == 1 and "vocab.txt" in err and "SHA-1" in err, "non-LFS file checked by its git blob id: %r" % err)

    # ---- 404s and gated repos --------------------------------------------------------
    url, log = start("--gated", REPO_OPT + "=s3cret")
    c8 = os.path.join(tmp, "cache8")
    rc, out, err = run(["pull", "qf-test/no-such-repo"], c8, url)
    check(rc == 1 and "qf-test/no-such-repo" in err and "not found or gated" in err and "HF_TOKEN" in err,
          "unknown repo: the 404 message (%r)" % err)
    check(out == "", "unknown repo: nothing on stdout")
    rc, _, err = run(["pull", REPO_ITM, "--revision", "v9"], c8, url)
    check(rc == 1 and "revision 'v9' not found" in err, "unknown revision named (%r)" % err)
    rc, _, err = run(["pull", REPO_OPT], c8, url)
    check(rc == 1 and "is gated" in err and "HF_TOKEN" in err and "401" in err,
          "gated without a token: 401 says HF_TOKEN (%r)" % err)
    check(not glob.glob(os.path.join(c8, "**", "*.incomplete"), recursive=True), "a refused file leaves no empty part")
    rc, _, err = run(["pull", REPO_OPT], c8, url, {"HF_TOKEN": "wrong"})
    check(rc == 1 and "403" in err and "refused" in err, "gated with a wrong token: 403 (%r)" % err)
    rc, out, err = run(["pull", REPO_OPT], c8, url, {"HF_TOKEN": "s3cret"})
    check(rc == 0, "gated with HF_TOKEN: exit 0 (%r)" % err)
    check(any("/resolve/" in l and "auth=yes" in l for l in log_lines(log)), "HF_TOKEN sent as Authorization")
    if rc == 0:
        same_files(out.strip(), OPT, "gated pull")
    rc, _, err = run(["pull", REPO_ITM, "--endpoint", "http://127.0.0.1:1"], c8)
    check(rc == 1 and "127.0.0.1:1" in err and "network" in err, "unreachable endpoint explained (%r)" % err)

    # ---- usage -----------------------------------------------------------------------
    rc, out, _ = run(["pull", "--help"], c8)
    check(rc == 0 and "example" in out and "HF_TOKEN" in out, "pull --help exits 0 with examples")
    rc, _, _ = run(["pull"], c8)
    check(rc == 2, "pull without REPO_ID: usage error")
    rc, _, err = run(["pull", "a/b/c"], c8)
    check(rc == 2 and "a/b/c" in err, "pull a/b/c: usage error naming it")
    rc, _, _ = run(["pull", REPO_ITM, "--retries", "x"], c8)
    check(rc == 2, "--retries x: usage error")

    # ---- progress bar on a terminal ---------------------------------------------------
    url, _ = start("--rate", "3000000")      # ~1.5 s for model.safetensors: the bar moves
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = base_env(os.path.join(tmp, "cache9"))
    env["HF_ENDPOINT"] = url
    p = subprocess.Popen([qf, "pull", REPO_ITM], stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    tty_out = b""
    while True:
        r, _, _ = select.select([master], [], [], 60)
        if not r:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        tty_out += chunk
    p.wait(timeout=60)
    os.close(master)
    t = tty_out.decode("utf-8", "replace")
    check(p.returncode == 0, "pull on a TTY exits 0")
    check("\r" in t and "100%" in t and "/s" in t and "[####" in t,
          "TTY gets a redrawn bar with percent and speed: %r" % t[:400])
    mid = [l for l in re.split(r"[\r\n]", t) if "model.safetensors" in l and "ETA" in l]
    check(any(re.search(r"\b([1-9]\d?)% \[#+ +\] .* MB / .*MB/s  ETA 0:0\d", l) for l in mid),
          "a mid-transfer line shows the percent, bytes, speed and a numeric ETA: %r" % mid[:6])
finally:
    stop_all()
    shutil.rmtree(tmp, ignore_errors=True)

print("pull.sh: %d failure(s)" % len(fails))
sys.exit(1 if fails else 0)
PY
