#!/usr/bin/env python3
"""make_format_seeds.py - (re)writes the seed corpora of the per-format image
harnesses: tests/fuzz/corpus/{webp,gif,tiff,bmp,heif,exif}/ (and one file of
each format in corpus/image/). Small files written with Debian's Pillow
(python3-pil); HEIC/AVIF with make_heif (built by CMake: tests/tools/) when
its path is given. Usage:
    /usr/bin/python3 tests/fuzz/make_format_seeds.py [BUILD_DIR/make_heif]
"""
import io
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def out(h, name, data):
    d = os.path.join(CORPUS, h)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def save(im, fmt, **kw):
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def exif(o):
    e = Image.Exif()
    e[0x0112] = o
    return e


rng = np.random.default_rng(7)
rgb = Image.fromarray(rng.integers(0, 256, (6, 9, 3), dtype=np.uint8), "RGB")
rgba = Image.fromarray(rng.integers(0, 256, (6, 9, 4), dtype=np.uint8), "RGBA")
pal = rgb.quantize(colors=8)

out("webp", "lossy_o6.webp", save(rgb, "WEBP", quality=50, exif=exif(6)))
out("webp", "lossless.webp", save(rgb, "WEBP", lossless=True))
out("webp", "alpha.webp", save(rgba, "WEBP", lossless=True))
out("webp", "alpha_lossy.webp", save(rgba, "WEBP", quality=50))
out("webp", "animated.webp", save(rgb, "WEBP", save_all=True, append_images=[rgba.convert("RGB")], lossless=True))
out("gif", "palette.gif", save(pal, "GIF"))
out("gif", "transparent.gif", save(pal, "GIF", transparency=1))
out("gif", "interlaced.gif", save(pal, "GIF", interlace=True))
out("gif", "grey.gif", save(rgb.convert("L"), "GIF"))
out("gif", "animated.gif", save(pal, "GIF", save_all=True, append_images=[rgba.convert("RGB").quantize(4)]))
for comp in ("raw", "tiff_lzw", "tiff_adobe_deflate", "jpeg", "packbits"):
    out("tiff", f"rgb_{comp}.tif", save(rgb, "TIFF", compression=comp))
out("tiff", "grey_o8.tif", save(rgb.convert("L"), "TIFF", exif=exif(8)))
out("tiff", "bilevel.tif", save(rgb.convert("1"), "TIFF"))
out("tiff", "g4.tif", save(rgb.convert("1"), "TIFF", compression="group4"))
out("tiff", "rgba.tif", save(rgba, "TIFF"))
out("tiff", "palette.tif", save(pal, "TIFF"))
out("tiff", "cmyk.tif", save(rgb.convert("CMYK"), "TIFF"))
out("tiff", "grey16.tif", save(Image.fromarray(np.arange(54, dtype=np.uint16).reshape(6, 9) * 9, "I;16"), "TIFF"))
out("tiff", "greyalpha.tif", save(rgb.convert("LA"), "TIFF"))
out("bmp", "1bit.bmp", save(rgb.convert("1"), "BMP"))
out("bmp", "8bit.bmp", save(pal, "BMP"))
out("bmp", "grey.bmp", save(rgb.convert("L"), "BMP"))
out("bmp", "24bit.bmp", save(rgb, "BMP"))
out("bmp", "32bit.bmp", save(rgba, "BMP"))
# OS/2 1.x header (12 bytes), 24-bit
w, h = 3, 2
rows = b"".join(bytes(rng.integers(0, 256, 9, dtype=np.uint8)) + b"\0" * 3 for _ in range(h))
out("bmp", "os2.bmp", b"BM" + struct.pack("<IHHI", 26 + len(rows), 0, 0, 26) +
    struct.pack("<IHHHH", 12, w, h, 1, 24) + rows)
# EXIF: the APP1 payloads Pillow writes for each orientation, and a
# big-endian one
for o in (1, 3, 6, 8):
    out("exif", f"le_o{o}.bin", exif(o).tobytes()[6:] if exif(o).tobytes().startswith(b"Exif") else exif(o).tobytes())
be = b"MM\0*" + struct.pack(">IH", 8, 2) + struct.pack(">HHI", 0x10F, 2, 6) + struct.pack(">I", 38) + \
     struct.pack(">HHIHH", 0x112, 3, 1, 7, 0) + b"\0\0\0\0" + b"Canon\0"
out("exif", "be_make_o7.bin", be)
# one of each in the generic image corpus
for h_, n in (("webp", "lossy_o6.webp"), ("gif", "transparent.gif"), ("tiff", "rgb_jpeg.tif"), ("bmp", "8bit.bmp")):
    shutil.copy(os.path.join(CORPUS, h_, n), os.path.join(CORPUS, "image", n))

if len(sys.argv) > 1:
    os.makedirs(os.path.join(CORPUS, "heif"), exist_ok=True)
    with tempfile.TemporaryDirectory() as t:
        subprocess.run([sys.argv[1], t, "12", "8"], check=True)
        for n in ("heic_o1.heic", "heic_o6.heic", "avif_o1.avif", "avif_o5.avif"):
            shutil.copy(os.path.join(t, n), os.path.join(CORPUS, "heif", n))
        shutil.copy(os.path.join(t, "heic_o6.heic"), os.path.join(CORPUS, "image", "heic_o6.heic"))
print("make_format_seeds: done")
