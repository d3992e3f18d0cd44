#!/usr/bin/env bash
# image_formats.sh - a photo library of every format and variant qformer
# reads (PNG, JPEG, WebP, GIF, TIFF, BMP written by Pillow 9.4; HEIC and
# AVIF written with libheif by make_heif), all eight EXIF orientations of
# JPEG, PNG, WebP, TIFF and HEIC/AVIF, and broken files of each format:
#  1. embed --intermediates: resized_u8 byte for byte equal to Pillow's
#     exif_transpose + convert("RGB") + BICUBIC resize (tests/e2e/imgcorpus.py)
#     for every Pillow-readable file; HEIC/AVIF: equal to the picture with
#     its orientation applied within lossy-coding tolerance, and nearer to it
#     than to any other orientation;
#  2. index of the whole folder (names in mixed case, a .HEIC among them):
#     exit 0, every good file embedded with its upright size, every bad one a
#     recorded failure whose reason names the format and the problem, and
#     nothing skipped silently (embedded + failed = files in the folder);
#  3. the HTML gallery's thumbnail of an oriented photo is upright (what the
#     model saw), not the stored pixels.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
itm="$QF_FIXTURES/tiny-blip2-itm"
size=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["size"]["height"])' "$itm/preprocessor_config.json")
/usr/bin/python3 "$here/imgcorpus.py" "$tmp/c" "$size"
"$QF_BINARY_DIR/make_heif" "$tmp/c/good" 40 26
mv "$tmp/c/good/picture.rgb" "$tmp/c/picture.rgb"

PYTHONPATH="$here" /usr/bin/python3 - "$tmp" "$itm" "$size" <<'PY'
import base64, io, json, os, re, sys
import numpy as np
from PIL import Image
from qfcheck import read_safetensors, run

tmp, itm, S = sys.argv[1], sys.argv[2], int(sys.argv[3])
good, badd = tmp + "/c/good", tmp + "/c/bad"
exp = np.load(tmp + "/c/expected.npz")
names = sorted(os.listdir(good))
heif = [n for n in names if n.endswith((".heic", ".avif"))]
assert len(heif) == 16, heif
fails = []

# 1. embed --intermediates, every good file in one run
args = ["embed", "--model", itm, "--intermediates", "--out", tmp + "/e.safetensors"]
for n in names:
    args += ["--image", f"{good}/{n}"]
run(*args)
got = read_safetensors(tmp + "/e.safetensors")["resized_u8"]
assert got.shape == (len(names), S, S, 3), got.shape
n_exact = 0
for i, n in enumerate(names):
    if n in heif:
        continue
    if not np.array_equal(got[i], exp[n]):
        d = np.abs(got[i].astype(int) - exp[n])
        fails.append(f"{n}: resized_u8 differs from Pillow in {np.count_nonzero(d)} bytes (max {d.max()})")
    else:
        n_exact += 1
print(f"image_formats: {n_exact}/{len(names) - len(heif)} Pillow-readable files byte-identical to Pillow")

T = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
     5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
     8: Image.Transpose.ROTATE_90}
pic = Image.frombytes("RGB", (40, 26), open(tmp + "/c/picture.rgb", "rb").read())
cands = {o: np.asarray((pic.transpose(T[o]) if o in T else pic).resize((S, S), Image.BICUBIC)).astype(int)
         for o in range(1, 9)}
for i, n in enumerate(names):
    if n not in heif:
        continue
    o = int(re.search(r"_o(\d)", n).group(1))
    err = {k: float(np.abs(got[i].astype(int) - c).mean()) for k, c in cands.items()}
    best = min(err, key=err.get)
    if err[o] > 6.0 or best != o:
        fails.append(f"{n}: mean error {err[o]:.2f} for orientation {o}; best match is {best} ({err[best]:.2f})")
print(f"image_formats: {len(heif)} HEIC/AVIF files upright within lossy tolerance")

# 2. index the whole folder: good and bad files together
lib = tmp + "/library"
os.makedirs(lib)
for d in (good, badd):
    for n in os.listdir(d):
        os.link(f"{d}/{n}", f"{lib}/{n}")
os.link(f"{good}/heic_o6.heic", f"{lib}/IMG_0001")    # no extension: found by its ftyp box
os.link(f"{good}/webp_o6.webp", f"{lib}/shared_photo")  # no extension: found by RIFF/WEBP
n_files, n_bad = len(os.listdir(lib)), len(os.listdir(badd))
db = tmp + "/lib.db"
r = run("index", "--model", itm, "--db", db, "--quiet", lib)
m = re.search(r"embedded (\d+) images?, (\d+) failed", r.stdout) or \
    re.search(r"\((\d+) embedded, (\d+) failed", r.stdout)
if not m or (int(m[1]), int(m[2])) != (n_files - n_bad, n_bad):
    fails.append(f"index: expected {n_files} images, {n_files - n_bad} embedded, {n_bad} failed: {r.stdout!r}")
fl = run("info", "--db", db, "--failures").stdout
failed = {}
for line in fl.splitlines():
    if "\t" in line:
        p, msg = line.split("\t", 1)
        failed[os.path.basename(p)] = msg
if set(failed) != set(os.listdir(badd)):
    fails.append(f"failures listed {sorted(failed)} != bad files {sorted(os.listdir(badd))}")
fmt_words = {".webp": "WebP", ".gif": "GIF", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP", ".dib": "BMP",
             ".heic": "HEI", ".avif": "AVIF"}
for n, msg in failed.items():
    ext = os.path.splitext(n)[1].lower()
    word = fmt_words.get(ext)
    # an empty file has no format to name: "empty" is its whole reason
    named = word and (word in msg or ext[1:] in msg.lower() or "empty" in msg)
    problem = any(k in msg for k in ("truncated", "corrupt", "empty", "not supported", "not a", "does not"))
    if not (named and problem):
        fails.append(f"failure of {n} does not name the format and the problem: {msg}")
run("export", "--db", db, "--out", tmp + "/exp")
rows = {os.path.basename(j["path"]): j for j in map(json.loads, open(tmp + "/exp/images.jsonl"))}
for n in names:
    j = rows.get(n)
    if not j or j["status"] != "ok":
        fails.append(f"{n}: not embedded by index: {j}")
        continue
    want = tuple(int(v) for v in exp["size:" + n]) if n not in heif else \
        ((26, 40) if int(re.search(r"_o(\d)", n).group(1)) >= 5 else (40, 26))
    if (j["width"], j["height"]) != want:
        fails.append(f"{n}: recorded size {j['width']}x{j['height']}, upright size is {want[0]}x{want[1]}")
for n, o in (("IMG_0001", (26, 40)), ("shared_photo", (26, 40))):
    j = rows.get(n)
    if not j or j["status"] != "ok" or (j["width"], j["height"]) != o:
        fails.append(f"{n} (no extension) not found by magic or not upright: {j}")
print(f"image_formats: index: {n_files - n_bad} embedded upright, {n_bad} failures with reasons, none skipped")

# 3. the gallery shows what the model saw: search by the oriented photo itself
for n in ("jpeg_o6.jpg", "heic_o8.heic", "webp_o5.webp"):
    run("search", "--db", db, "-k", "1", "--format", "html", "--out", tmp + "/g.html", "--image", f"{lib}/{n}")
    html = open(tmp + "/g.html").read()
    uri = re.search(r'src="data:image/jpeg;base64,([^"]+)"', html)
    if not uri or n not in html:
        fails.append(f"gallery for {n}: no thumbnail of it")
        continue
    th = Image.open(io.BytesIO(base64.b64decode(uri[1]))).convert("RGB")
    if th.size[0] > th.size[1]:
        fails.append(f"gallery thumbnail of {n} is {th.size[0]}x{th.size[1]}: landscape, not upright")
    up = np.asarray(th.resize((S, S), Image.BICUBIC)).astype(int)
    ref = exp[n].astype(int) if n in exp else cands[int(re.search(r"_o(\d)", n).group(1))]
    if np.abs(up - ref).mean() > 12:
        fails.append(f"gallery thumbnail of {n} differs from what the model saw "
                     f"(mean {np.abs(up - ref).mean():.1f})")
print("image_formats: gallery thumbnails upright")

if fails:
    print("image_formats: FAILED\n  " + "\n  ".join(fails), file=sys.stderr)
    sys.exit(1)
print("image_formats: all checks passed")
PY
