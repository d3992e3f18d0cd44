#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine: installs what is needed,
# builds qformer, fetches real photographs (the sample images of Debian's
# python3-skimage package), indexes them, runs a few text searches with ITM
# rerank and captions, and writes an HTML gallery.
#
# With the real checkpoints in the cache (`qformer pull Salesforce/blip2-itm-vit-g`
# and `qformer pull Salesforce/blip2-opt-2.7b`) the results are meaningful.
# Without them (no network) the same pipeline runs on the tiny RANDOM test
# checkpoints of tests/fixtures, clearly labelled: the rankings and captions
# are then meaningless, but every stage runs for real.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
out=${QF_DEMO_OUT:-demo-out}

bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target qformer
qf=build/qformer

mkdir -p "$out"
if ! bash scripts/fetch-sample-images.sh "$out/images"; then
  echo "demo: could not fetch the skimage sample photographs; using the test images instead" >&2
  mkdir -p "$out/images"
  cp tests/fixtures/tiny-blip2-itm/inputs/*.png tests/fixtures/tiny-blip2-itm/inputs/*.jpg "$out/images/"
fi

itm=Salesforce/blip2-itm-vit-g
cap=Salesforce/blip2-opt-2.7b
if "$qf" info --model "$itm" >/dev/null 2>&1 && "$qf" info --model "$cap" >/dev/null 2>&1; then
  label="real BLIP-2 checkpoints ($itm, $cap)"
else
  cat >&2 <<MSG

  ************************************************************************
  *  The real BLIP-2 checkpoints are not in the cache (no network here?) *
  *  To get them:  $qf pull $itm                        *
  *                $qf pull $cap                         *
  *  Running the SAME pipeline on the tiny RANDOM test checkpoints:      *
  *  rankings and captions below are MEANINGLESS (random weights).       *
  ************************************************************************

MSG
  itm=tests/fixtures/tiny-blip2-itm
  cap=tests/fixtures/tiny-blip2-opt
  label="TINY RANDOM test checkpoints: results are meaningless"
fi
echo "== model: $label"

db="$out/demo.db"
"$qf" index --model "$itm" --db "$db" "$out/images"
"$qf" info --db "$db"
for q in "an astronaut in a space suit" "a cat lying down" "a cup of coffee" "a rocket on the launch pad"; do
  echo
  "$qf" search --db "$db" -k 5 --rerank 5 --caption 3 --caption-model "$cap" "$q"
done
"$qf" search --db "$db" -k 8 --rerank 8 --caption 8 --caption-model "$cap" \
  --format html --out "$out/gallery.html" "a cat lying down"

# the same index behind `qformer serve`: one API search through loopback, then SIGTERM
echo
echo "== qformer serve --db $db (one API request, then stopped)"
"$qf" serve --db "$db" --caption-model "$cap" --port 0 >"$out/serve.out" &
spid=$!
for _ in $(seq 600); do grep -q '^qformer serve: http' "$out/serve.out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's|^qformer serve: \(http://[^ ]*\) .*|\1|p' "$out/serve.out")
if [ -n "$url" ]; then
  python3 -c 'import json, sys, urllib.request
r = json.load(urllib.request.urlopen(sys.argv[1] + "api/search?k=3&q=a+cat+lying+down"))
for h in r["results"]: print("  ", h["rank"], "%.4f" % h["score"], h["path"])' "$url" || echo "demo: the API request failed" >&2
fi
kill -TERM "$spid"; wait "$spid" || echo "demo: qformer serve exited with an error" >&2
echo
echo "== demo done ($label)"
echo "   gallery: $out/gallery.html   index: $db   images: $out/images"
echo "   browse it: $qf serve --db $db --caption-model $cap   (then open http://127.0.0.1:8080/)"
