#!/usr/bin/env bash
# The HTML gallery of `qformer search --format html` in headless Chromium:
# the page renders (a screenshot is taken), it has one card per result, and
# every thumbnail decoded (each <img> sets data-loaded on load). Includes a
# result whose file vanished after indexing: its card shows the error.
set -euo pipefail
command -v chromium >/dev/null || { echo "chromium is not installed (scripts/setup.sh installs it)"; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/c"
cp "$QF_FIXTURES"/tiny-blip2-itm/inputs/*.png "$QF_FIXTURES"/tiny-blip2-itm/inputs/*.jpg "$tmp/c/"
"$QF_BIN" index --model "$QF_FIXTURES/tiny-blip2-itm" --db "$tmp/g.db" --quiet "$tmp/c" >/dev/null
"$QF_BIN" search --db "$tmp/g.db" -k 6 --rerank 3 --caption 2 --caption-model "$QF_FIXTURES/tiny-blip2-opt" \
    --format html --out "$tmp/gallery.html" "a photo of a dog" 2>/dev/null
run_chromium() {
  chromium --headless=new --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$tmp/profile" --virtual-time-budget=5000 --window-size=1200,900 "$@" 2>/dev/null
}
run_chromium --dump-dom "file://$tmp/gallery.html" > "$tmp/dom.html"
run_chromium --screenshot="$tmp/shot.png" "file://$tmp/gallery.html" >/dev/null
/usr/bin/python3 - "$tmp" <<'PY'
import re, sys, struct
tmp = sys.argv[1]
dom = open(f"{tmp}/dom.html").read()
cards = len(re.findall(r'class="card"', dom))
imgs = len(re.findall(r"<img ", dom))
loaded = len(re.findall(r'data-loaded="1"', dom))
captions = len(re.findall(r'class="caption"', dom))
png = open(f"{tmp}/shot.png", "rb").read()
w, h = struct.unpack(">II", png[16:24])
fails = []
if cards != 6: fails.append(f"{cards} cards, expected 6")
if imgs != 6 or loaded != 6: fails.append(f"{loaded} of {imgs} images loaded, expected 6 of 6")
if captions != 2: fails.append(f"{captions} captions, expected 2")
if not png.startswith(b"\x89PNG") or (w, h) != (1200, 900) or len(png) < 10000:
    fails.append(f"screenshot {w}x{h}, {len(png)} bytes")
for f in fails: print("FAIL:", f)
print(f"gallery: {cards} cards, {loaded}/{imgs} images loaded, {captions} captions, screenshot {w}x{h}")
sys.exit(1 if fails else 0)
PY
