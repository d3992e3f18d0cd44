#!/usr/bin/env bash
# The search page of `qformer serve` in headless Chromium, driven through the
# DevTools protocol over --remote-debugging-pipe (no extra packages): tick
# rerank and captions, type a query, press Enter; the grid shows the API's
# results in the API's order with every thumbnail decoded, ITM scores and
# captions; a screenshot is taken (kept as $QF_BINARY_DIR/serve_page.png to
# look at); clicking the first result searches by that image, which comes
# back first (an image's best match is itself).
set -euo pipefail
command -v chromium >/dev/null || { echo "chromium is not installed (scripts/setup.sh installs it)"; exit 1; }
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
mkdir -p "$tmp/c"
cp "$QF_FIXTURES"/tiny-blip2-itm/inputs/*.png "$QF_FIXTURES"/tiny-blip2-itm/inputs/*.jpg "$tmp/c/"
"$QF_BIN" index --model "$QF_FIXTURES/tiny-blip2-itm" --db "$tmp/g.db" --quiet "$tmp/c" >/dev/null
"$QF_BIN" serve --db "$tmp/g.db" --port 0 --caption-model "$QF_FIXTURES/tiny-blip2-opt" >"$tmp/serve.out" 2>"$tmp/serve.err" &
pid=$!
for _ in $(seq 100); do grep -q '^qformer serve: http' "$tmp/serve.out" 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's|^qformer serve: http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$tmp/serve.out")
[ -n "$port" ] || { echo "FAIL: serve did not start"; cat "$tmp/serve.err"; exit 1; }
shot="${QF_BINARY_DIR:-$tmp}/serve_page.png"
/usr/bin/python3 - "$tmp" "$port" "$shot" <<'PY'
import base64, json, os, select, struct, subprocess, sys, time, urllib.request
tmp, port, shot = sys.argv[1], int(sys.argv[2]), sys.argv[3]
base = f"http://127.0.0.1:{port}"
# fd 3: commands to Chromium, fd 4: its answers; messages end with a NUL byte
cmd_r, cmd_w = os.pipe()
ans_r, ans_w = os.pipe()
hi_r, hi_w = os.dup(cmd_r) + 100, os.dup(ans_w) + 100
os.dup2(cmd_r, hi_r); os.dup2(ans_w, hi_w)
def child():
    os.dup2(hi_r, 3); os.dup2(hi_w, 4)
chrome = subprocess.Popen(
    ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-quic",
     "--disable-background-networking", "--disable-component-update", "--disable-sync",
     f"--user-data-dir={tmp}/profile", "--remote-debugging-pipe", "--window-size=1200,900", "about:blank"],
    close_fds=False, preexec_fn=child, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
for fd in (cmd_r, ans_w, hi_r, hi_w): os.close(fd)
out, inp = os.fdopen(cmd_w, "wb", buffering=0), os.fdopen(ans_r, "rb", buffering=0)
buf, seq, session = b"", [0], None

def send(method, params=None, timeout=30):
    global buf
    seq[0] += 1
    msg = {"id": seq[0], "method": method, "params": params or {}}
    if session and not method.startswith("Target."): msg["sessionId"] = session
    out.write(json.dumps(msg).encode() + b"\0")
    end = time.time() + timeout
    while time.time() < end:
        while b"\0" in buf:
            raw, buf = buf.split(b"\0", 1)
            m = json.loads(raw)
            if m.get("id") == seq[0]:
                if "error" in m: raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
        if not select.select([inp], [], [], 1)[0]: continue
        chunk = inp.read(1 << 16)
        if not chunk: raise RuntimeError("chromium closed the pipe")
        buf += chunk
    raise RuntimeError(f"{method}: no answer")

def js(expr):
    r = send("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True})
    return r.get("result", {}).get("value")

def wait_for(expr, what, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        if js(expr): return
        time.sleep(0.2)
    st = js("document.getElementById('status').textContent")
    raise RuntimeError(f"timed out waiting for {what}; status: {st}")

def key(k, code, vk, text=None):
    for t in ("keyDown", "keyUp"):
        p = {"type": t, "key": k, "code": code, "windowsVirtualKeyCode": vk}
        if text and t == "keyDown": p["text"] = text
        send("Input.dispatchKeyEvent", p)

fails = []
def check(cond, what):
    if not cond: fails.append(what); print("FAIL:", what)

try:
    target = send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    send("Page.enable")
    send("Emulation.setDeviceMetricsOverride", {"width": 1200, "height": 900, "deviceScaleFactor": 1, "mobile": False})
    send("Page.navigate", {"url": base + "/"})
    wait_for("document.readyState === 'complete' && /images indexed/.test(document.getElementById('status').textContent)",
             "the page and /api/info")
    # tick rerank and captions, type the query, press Enter
    js("document.getElementById('k').value = '6'")
    js("document.getElementById('rr').click(); document.getElementById('cap').click()")
    js("document.getElementById('q').focus()")
    send("Input.insertText", {"text": "a photo of a dog"})
    key("Enter", "Enter", 13, "\r")
    wait_for("document.querySelectorAll('.card').length === 6 && "
             "document.querySelectorAll('.card[data-loaded=\"1\"]').length === 6", "6 results with thumbnails")
    page_ids = js("JSON.stringify([...document.querySelectorAll('.card')].map(c => +c.dataset.id))")
    api = json.load(urllib.request.urlopen(base + "/api/search?q=a+photo+of+a+dog&k=6&rerank=6&caption=4"))
    check(json.loads(page_ids) == [r["id"] for r in api["results"]], f"page order {page_ids} = API order")
    caps = js("document.querySelectorAll('.caption').length")
    itm = js("[...document.querySelectorAll('.scores')].filter(s => /itm/.test(s.textContent)).length")
    check(caps == 4 and itm == 6, f"4 captions ({caps}), 6 ITM scores ({itm})")
    check(js("document.getElementById('query').textContent") == "a photo of a dog", "query shown")
    png = base64.b64decode(send("Page.captureScreenshot", {"format": "png"})["data"])
    open(shot, "wb").write(png)
    w, h = struct.unpack(">II", png[16:24])
    check(png.startswith(b"\x89PNG") and (w, h) == (1200, 900) and len(png) > 20000, f"screenshot {w}x{h} {len(png)} B")
    # click the first result: similar images, itself first
    first = json.loads(page_ids)[0]
    rect = js("JSON.stringify(document.querySelector('.card').getBoundingClientRect())")
    rect = json.loads(rect)
    x, y = rect["x"] + rect["width"] / 2, rect["y"] + rect["height"] / 2
    for t in ("mousePressed", "mouseReleased"):
        send("Input.dispatchMouseEvent", {"type": t, "x": x, "y": y, "button": "left", "clickCount": 1})
    wait_for("/^similar to #1/.test(document.getElementById('query').textContent) && "
             "document.querySelectorAll('.card[data-loaded=\"1\"]').length === 6", "similar images")
    sim = json.loads(js("JSON.stringify([...document.querySelectorAll('.card')].map(c => +c.dataset.id))"))
    check(sim[0] == first and len(sim) == 6, f"similar to {first}: {sim}")
    print(f"page: typed query -> {page_ids}, captions {caps}, similar -> {sim}; screenshot {shot}")
except Exception as e:
    fails.append(str(e)); print("FAIL:", e)
finally:
    try: send("Browser.close", timeout=5)
    except Exception: pass
    try: chrome.wait(10)
    except subprocess.TimeoutExpired: chrome.kill()
sys.exit(1 if fails else 0)
PY
