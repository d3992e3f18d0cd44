#!/usr/bin/env bash
# `qformer serve` on a real index, over loopback: the API answers exactly
# what the CLI prints (search text/image/rerank/caption, info); images by
# id only (path traversal attempts get 4xx and no file); 8 clients x 100
# requests all answered; hostile requests (1 MB query, 10 000 headers,
# truncated and malformed uploads, oversized bodies, a stalled client) get
# 4xx or are dropped while the server keeps serving; an `index` run is
# picked up live with every answer in between whole; SIGTERM with a request
# in flight completes it and exits 0.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
mkdir -p "$tmp/corpus" "$tmp/later"
cp "$QF_FIXTURES"/tiny-blip2-itm/inputs/{rgb_80x52,gray_64x48,palette_45x45,rgba_50x70}.png "$tmp/corpus/"
cp "$QF_FIXTURES"/tiny-blip2-itm/inputs/photo_72x56.jpg "$tmp/corpus/"
cp "$QF_FIXTURES"/tiny-blip2-itm/inputs/tiny_3x5.png "$tmp/later/"
cd "$tmp"
"$QF_BIN" index --model "$QF_FIXTURES/tiny-blip2-itm" --db "$tmp/s.db" --quiet "$tmp/corpus" >/dev/null
"$QF_BIN" serve --db "$tmp/s.db" --port 0 --threads 2 --caption-model "$QF_FIXTURES/tiny-blip2-opt" \
    >"$tmp/serve.out" 2>"$tmp/serve.err" &
pid=$!
for _ in $(seq 100); do grep -q '^qformer serve: http' "$tmp/serve.out" 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's|^qformer serve: http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$tmp/serve.out")
[ -n "$port" ] || { echo "FAIL: serve did not start"; cat "$tmp/serve.err"; exit 1; }
export TMPDIR_QF="$tmp" PORT="$port" SERVE_PID="$pid"
set +e
PYTHONPATH="$here" python3 - <<'PY'
import http.client, json, os, shutil, signal, socket, subprocess, threading, time
from qfcheck import *
tmp, port = os.environ["TMPDIR_QF"], int(os.environ["PORT"])
itm, opt = FIX + "/tiny-blip2-itm", FIX + "/tiny-blip2-opt"
db = tmp + "/s.db"

def get(path, method="GET", body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, r.getheader("Content-Type"), data

def raw(data, read=True, timeout=30):
    """Sends bytes on a fresh connection; the status line back (or '' when closed)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
    except OSError:
        pass
    out = b""
    if read:
        try:
            while b"\r\n" not in out:
                b = s.recv(4096)
                if not b: break
                out += b
        except OSError:
            pass
    s.close()
    return out.split(b"\r\n")[0].decode("latin-1")

def alive(why):
    st, _, data = get("/api/search?q=a+photo&k=1")
    check(st == 200 and json.loads(data)["results"], f"still serving after {why}: {st} {data[:200]}")

import urllib.parse
q = lambda s: urllib.parse.quote_plus(s)
texts = json.load(open(itm + "/inputs/texts.json"))

# --- the API is the CLI, byte for byte --------------------------------------------------
ref = {}
for t in texts[:4]:
    cli = run("search", "--db", db, "-k", "4", "--format", "json", "--", t).stdout.encode()
    st, ct, api = get("/api/search?k=4&q=" + q(t))
    check(st == 200 and ct == "application/json", f"search status {st} {ct}")
    check(api == cli, f"GET /api/search = search --format json for {t!r}:\n{api.decode()}\nvs\n{cli.decode()}")
    ref[t] = cli
t = texts[0]
cli = run("search", "--db", db, "-k", "5", "--rerank", "3", "--caption", "2", "--caption-model", opt,
          "--prompt", "a photo of", "--format", "json", "--", t).stdout.encode()
st, _, api = get("/api/search?k=5&rerank=3&caption=2&prompt=a+photo+of&q=" + q(t))
check(st == 200 and api == cli, f"rerank + caption identical:\n{api.decode()}\nvs\n{cli.decode()}")
res = json.loads(api)["results"]
check(sum(r["itm"] is not None for r in res) == 3 and sum(r["caption"] is not None for r in res) == 2,
      "3 reranked, 2 captioned")
# image-to-image: raw body and multipart, as search --image with the same name
img = open(tmp + "/corpus/photo_72x56.jpg", "rb").read()
os.chdir(tmp + "/corpus")
cli = run("search", "--db", db, "-k", "3", "--format", "json", "--image", "photo_72x56.jpg").stdout.encode()
os.chdir(tmp)
st, _, api = get("/api/search?k=3", "POST", img, {"Content-Type": "image/jpeg"})
check(st == 200 and api == cli.replace(b'"image:photo_72x56.jpg"', b'"image:upload"'), f"raw POST:\n{api.decode()}")
bnd = "qfboundary"
form = (f'--{bnd}\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n'
        f'--{bnd}\r\nContent-Disposition: form-data; name="image"; filename="photo_72x56.jpg"\r\n'
        f'Content-Type: image/jpeg\r\n\r\n').encode() + img + f"\r\n--{bnd}--\r\n".encode()
st, _, api = get("/api/search?k=3", "POST", form, {"Content-Type": f"multipart/form-data; boundary={bnd}"})
check(st == 200 and api == cli, f"multipart POST = search --image:\n{api.decode()}\nvs\n{cli.decode()}")
# a large upload (a 1200 x 900 random PNG, ~3 MB) arrives whole through MHD's small buffers
import random
big = make_png(1200, 900, random.Random(7))
open(tmp + "/big.png", "wb").write(big)
cli = run("search", "--db", db, "-k", "2", "--format", "json", "--image", tmp + "/big.png").stdout.encode()
st, _, api = get("/api/search?k=2", "POST", big, {"Content-Type": "image/png"})
check(st == 200 and api == cli.replace(f'"image:{tmp}/big.png"'.encode(), b'"image:upload"'), f"{len(big)} B upload: {st} {api[:200]}")
# info = info --db --format json, plus "server"
cli = json.loads(run("info", "--db", db, "--format", "json").stdout)
st, _, api = get("/api/info")
api = json.loads(api)
srv = api.pop("server", None)
for key in ("db_bytes",):          # the WAL grows with the captions cached above
    cli.pop(key); api.pop(key, None)
check(st == 200 and api == cli, f"info identical:\n{api}\nvs\n{cli}")
check(srv and srv["model"] == itm and srv["caption_model"] == opt and srv["uptime_s"] >= 0 and
      srv["index_vectors"] == 5 * 8, f"server block: {srv}")
# captions: generated once, then from the cache (as search --caption caches them)
st, _, a = get("/api/caption/3?prompt=a+photo+of")
st2, _, b = get("/api/caption/3?prompt=a+photo+of")
a, b = json.loads(a), json.loads(b)
cap_cli = json.loads(run("caption", "--model", opt, "--prompt", "a photo of", "--format", "json", a["path"]).stdout)
check(st == 200 and st2 == 200 and a["caption"] == b["caption"] and b["cached"], f"caption cached: {a} {b}")
check(a["caption"].strip() == cap_cli["text"].strip(), f"caption = qformer caption: {a['caption']!r} vs {cap_cli['text']!r}")

# --- images by id only ------------------------------------------------------------------------
for r in json.loads(ref[texts[0]])["results"]:
    st, ct, data = get(f"/api/image/{r['id']}")
    check(st == 200 and data == open(r["path"], "rb").read(), f"image {r['id']} = its file")
    check(ct == ("image/jpeg" if r["path"].endswith(".jpg") else "image/png"), f"content type {ct}")
    st, ct, data = get(f"/api/image/{r['id']}?thumb=1")
    check(st == 200 and ct == "image/jpeg" and data[:2] == b"\xff\xd8", f"thumbnail {st} {ct}")
for path in ["/api/image/../../../../etc/passwd", "/api/image/..%2f..%2f..%2fetc%2fpasswd",
             "/api/image/%2e%2e/%2e%2e/etc/passwd", "/api/image//etc/passwd", "/api/image/1/../../../etc/passwd",
             "/api/image/-1", "/api/image/99", "/api/image/1e3", "/api/image/0x1",
             "/../../../../etc/passwd", "/etc/passwd", "/api/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd",
             "/api/image/" + tmp + "/corpus/photo_72x56.jpg", "/api/caption/../../etc/passwd"]:
    line = raw(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    code = int(line.split()[1]) if len(line.split()) > 1 else 0
    check(400 <= code < 500, f"{path}: {line!r}")
    st, _, data = get(path) if "%00" not in path else (404, "", b"")
    check(b"root:" not in data and b"\xff\xd8" not in data[:2], f"{path}: no file served")
st, _, data = get("/api/nothing")
check(st == 404 and json.loads(data)["status"] == 404, f"unknown route: {st} {data}")
st, _, data = get("/api/search", "DELETE")
check(st == 405 and "error" in json.loads(data), f"DELETE: {st} {data}")
st, _, data = get("/api/info", "POST", b"x")
check(st == 405, f"POST /api/info: {st}")
for bad in ["k=0&q=x", "k=abc&q=x", "k=100000&q=x", "rerank=-1&q=x", "q=", "k=3", "caption=99&q=x"]:
    st, _, data = get("/api/search?" + bad)
    check(st == 400 and json.loads(data)["error"], f"/api/search?{bad}: {st} {data}")
st, _, data = get("/", "GET")
check(st == 200 and b"<form" in data and b"http://" not in data and b"https://" not in data, "page without external URLs")

# --- hostile requests ---------------------------------------------------------------------------
line = raw(b"GET /api/search?q=" + b"a" * (1 << 20) + b" HTTP/1.1\r\nHost: x\r\n\r\n")
check(line.startswith("HTTP/1.1 4"), f"1 MB query: {line!r}"); alive("a 1 MB query")
line = raw(b"GET /api/search?k=1&q=" + b"a" * 3000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
check(line.startswith("HTTP/1.1 400"), f"3 kB query: {line!r}")
line = raw(b"GET /api/info HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(10000)) + b"\r\n")
check(line.startswith("HTTP/1.1 4"), f"10000 headers: {line!r}"); alive("10 000 headers")
line = raw(b"GET /api/info HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 200000 + b"\r\n\r\n")
check(line.startswith("HTTP/1.1 4"), f"a 200 kB header: {line!r}")
part = (f'--{bnd}\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n').encode() + img[:300]
line = raw(b"POST /api/search HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=" + bnd.encode() +
           b"\r\nContent-Length: %d\r\n\r\n" % len(part) + part)
check(line.startswith("HTTP/1.1 400"), f"truncated multipart: {line!r}"); alive("a truncated multipart")
line = raw(b"POST /api/search HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data\r\nContent-Length: 5\r\n\r\nhello")
check(line.startswith("HTTP/1.1 400"), f"multipart without boundary: {line!r}")
line = raw(b"POST /api/search HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=zz\r\nContent-Length: 12\r\n\r\ngarbage\r\n\r\n\r\n")
check(line.startswith("HTTP/1.1 400"), f"garbage multipart: {line!r}")
raw(b"POST /api/search HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + img[:1000], read=False)
alive("an upload cut short")
line = raw(b"POST /api/search HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n" + b"\0" * 1000)
check(line.startswith("HTTP/1.1 400"), f"not an image: {line!r}")
line = raw(b"POST /api/search HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n" + b"x" * 65536)
check(line.startswith("HTTP/1.1 413"), f"50 MB body: {line!r}"); alive("a 50 MB body")
line = raw(b"POST /api/search HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
           b"".join(b"100000\r\n" + b"y" * 0x100000 + b"\r\n" for _ in range(34)) + b"0\r\n\r\n")
check(line in ("",) or line.startswith("HTTP/1.1 413"), f"34 MB chunked body: {line!r}")   # 413, or reset mid-send
alive("a 34 MB chunked body")
line = raw(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(200), timeout=2)   # no CRLF: MHD waits
check(line == "" or line.startswith("HTTP/1.1 4"), f"TLS hello: {line!r}")
line = raw(b"BREW /coffee HTTP/1.1\r\nHost: x\r\n\r\n")
check(line.startswith("HTTP/1.1 4"), f"unknown method: {line!r}")
stalled = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
for s in stalled: s.sendall(b"GET /api/search?q=slow HTTP/1.1\r\nHost: x\r\n")   # headers never finished
alive("20 stalled clients")
for s in stalled: s.close()

# --- 8 clients x 100 requests -------------------------------------------------------------------
errors, answered = [], [0] * 8
def client(i):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)   # keep-alive
    for n in range(100):
        t = texts[(i + n) % 4]
        try:
            c.request("GET", "/api/search?k=4&q=" + q(t))
            r = c.getresponse(); data = r.read()
        except Exception as e:
            errors.append(f"client {i} request {n}: {e}"); c = http.client.HTTPConnection("127.0.0.1", port, timeout=60); continue
        if r.status != 200 or data != ref[t]: errors.append(f"client {i} request {n}: {r.status} {data[:100]}")
        else: answered[i] += 1
th = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(8)]
t0 = time.time()
for x in th: x.start()
for x in th: x.join()
check(not errors and sum(answered) == 800, f"8 x 100: {sum(answered)} answered; {errors[:5]}")
print(f"8 clients x 100 requests: {sum(answered)} answered identically in {time.time() - t0:.1f} s")

# --- an index run under a running server ----------------------------------------------------------
stop, seen, bad = threading.Event(), set(), []
def watcher():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    while not stop.is_set():
        c.request("GET", "/api/search?k=10&q=" + q(texts[1])); r = c.getresponse(); data = r.read()
        try:
            res = json.loads(data)["results"]
            n = len(res)
            if r.status != 200 or n not in (5, 6) or len({x["id"] for x in res}) != n: bad.append((r.status, data[:200]))
            seen.add(n)
        except Exception as e:
            bad.append((r.status, str(e)))
w = threading.Thread(target=watcher, daemon=True); w.start()
time.sleep(0.3)
shutil.copy(tmp + "/later/tiny_3x5.png", tmp + "/corpus/tiny_3x5.png")
run("index", "--model", itm, "--db", db, "--quiet", tmp + "/corpus")
time.sleep(0.5)
stop.set(); w.join()
check(not bad, f"answers during the index run: {bad[:3]}")
cli = run("search", "--db", db, "-k", "10", "--format", "json", "--", texts[1]).stdout.encode()
st, _, api = get("/api/search?k=10&q=" + q(texts[1]))
check(st == 200 and api == cli and len(json.loads(api)["results"]) == 6, f"new index served:\n{api.decode()}")
info = json.loads(get("/api/info")[2])
check(info["server"]["index_reloads"] >= 1 and info["server"]["index_vectors"] == 6 * 8, f"reloaded: {info['server']}")
print(f"live update: result counts seen {sorted(seen)}, reloads {info['server']['index_reloads']}")

# --- SIGTERM with a request in flight -----------------------------------------------------------
s = socket.create_connection(("127.0.0.1", port), timeout=30)
s.sendall(b"POST /api/search?k=2 HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(img) + img[:200])
time.sleep(0.5)
os.kill(int(os.environ["SERVE_PID"]), signal.SIGTERM)
time.sleep(0.5)
try:
    c2 = socket.create_connection(("127.0.0.1", port), timeout=2); c2.close(); refused = False
except OSError:
    refused = True
check(refused, "no new connections after SIGTERM")
s.sendall(img[200:])
resp = b""
while True:
    b = s.recv(65536)
    if not b: break
    resp += b
    if b"\r\n\r\n" in resp:
        head, _, body = resp.partition(b"\r\n\r\n")
        n = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")]
        if n and len(body) >= n[0]: break
head, _, body = resp.partition(b"\r\n\r\n")
check(head.startswith(b"HTTP/1.1 200") and len(json.loads(body)["results"]) == 2, f"in-flight request completed: {resp[:300]}")
sys.exit(1 if FAILS else 0)
PY
rc=$?
[ $rc -eq 0 ] || kill -9 "$pid" 2>/dev/null
wait "$pid"; src=$?; pid=
set -e
[ $rc -eq 0 ] || { echo "--- serve stderr"; tail -20 "$tmp/serve.err"; exit 1; }
[ $src -eq 0 ] || { echo "FAIL: serve exited $src after SIGTERM"; tail -20 "$tmp/serve.err"; exit 1; }
echo "serve: API = CLI, hostile requests answered 4xx, live update, SIGTERM exit 0"
