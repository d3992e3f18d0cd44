"""imgcorpus.py - writes the photo-library test corpus of tests/e2e/image_formats.sh
with Debian's Pillow 9.4 (python3-pil) and numpy, and computes what
transformers.image_utils.load_image + BlipImageProcessor's resize give for
each file: ImageOps.exif_transpose, convert("RGB"), resize BICUBIC.

    imgcorpus.py OUT_DIR SIZE     -> OUT_DIR/good/*, OUT_DIR/bad/*, OUT_DIR/expected.npz

expected.npz holds, per good file (key = file name), the reference
resized_u8 [SIZE, SIZE, 3] and "size:<name>" = upright (w, h). Nothing is
committed: the files are generated at test time (a few hundred kB).

TIFF orientation: Pillow 9.4 applies a TIFF's Orientation twice (once in
TiffImageFile.load_end, again in exif_transpose; fixed in later Pillow). The
reference for an oriented TIFF is therefore the untagged TIFF's pixels
transposed once, as exif_transpose does for every other format.
"""
import io
import os
import struct
import sys

import numpy as np
from PIL import Image, ImageOps

OUT, SIZE = sys.argv[1], int(sys.argv[2])
GOOD, BAD = os.path.join(OUT, "good"), os.path.join(OUT, "bad")
os.makedirs(GOOD, exist_ok=True)
os.makedirs(BAD, exist_ok=True)
rng = np.random.default_rng(13)
expected = {}

TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
             4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
             6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
             8: Image.Transpose.ROTATE_90}


def photo(w, h):
    """A smooth, asymmetric picture (gradients + a block in one corner +
    noise), so every orientation and every resampling error shows."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    a = np.stack([255 * x / max(w - 1, 1), 255 * y / max(h - 1, 1),
                  127 + 120 * np.sin((x + 2 * y) / 5.0)], axis=-1)
    a[: h // 4, : w // 3] = (250, 20, 30)
    a += rng.normal(0, 12, a.shape)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")


def exif(o):
    e = Image.Exif()
    e[0x0112] = o
    return e


def reference(data):
    im = Image.open(io.BytesIO(data))
    im = ImageOps.exif_transpose(im)
    return im.convert("RGB")


def put(name, data, ref=None):
    with open(os.path.join(GOOD, name), "wb") as f:
        f.write(data)
    im = ref if ref is not None else reference(data)
    expected["size:" + name] = np.array(im.size)
    expected[name] = np.asarray(im.resize((SIZE, SIZE), Image.BICUBIC))


def bad(name, data):
    with open(os.path.join(BAD, name), "wb") as f:
        f.write(data)


def save(im, fmt, **kw):
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


base = photo(40, 26)           # landscape: every orientation changes the result

# --- JPEG and PNG: all eight orientations ------------------------------------
for o in range(1, 9):
    put(f"jpeg_o{o}.jpg", save(base, "JPEG", quality=92, exif=exif(o)))
    put(f"png_o{o}.png", save(base, "PNG", exif=exif(o)))
put("jpeg_grey_o6.JPG", save(base.convert("L"), "JPEG", exif=exif(6)))


def chunks(png):
    pos, out = 8, []
    while pos < len(png):
        n = struct.unpack(">I", png[pos:pos + 4])[0]
        out.append(png[pos:pos + 12 + n])
        pos += 12 + n
    return out


# eXIf after the image data (Pillow reads it when it loads the image)
cs = chunks(save(base, "PNG", exif=exif(6)))
ex = [c for c in cs if c[4:8] == b"eXIf"]
rest = [c for c in cs if c[4:8] != b"eXIf"]
put("png_exif_after_idat.png", b"\x89PNG\r\n\x1a\n" + b"".join(rest[:-1]) + ex[0] + rest[-1])
# two Exif APP1 segments (6, then 3): Pillow keeps the first
j = save(base, "JPEG", quality=90, exif=exif(6))
app = exif(3).tobytes()
p = 2
while j[p + 1] != 0xE1:
    p += 2 + struct.unpack(">H", j[p + 2:p + 4])[0]
p += 2 + struct.unpack(">H", j[p + 2:p + 4])[0]
put("jpeg_two_exif.jpg", j[:p] + b"\xff\xe1" + struct.pack(">H", len(app) + 2) + app + j[p:])
put("jpeg_cmyk_o8.jpeg", save(base.convert("CMYK"), "JPEG", exif=exif(8)))

# --- WebP: lossy, lossless, alpha, animated; orientations ---------------------
rgba = base.convert("RGBA")
al = np.asarray(rgba).copy()
al[..., 3] = np.linspace(0, 255, al.shape[1], dtype=np.uint8)[None, :]
al[:5, :5, 3] = 0
rgba = Image.fromarray(al, "RGBA")
put("webp_lossy.webp", save(base, "WEBP", quality=80))
put("webp_lossless.webp", save(base, "WEBP", lossless=True))
put("webp_alpha_lossless.webp", save(rgba, "WEBP", lossless=True, exact=True))
put("webp_alpha_lossy.WEBP", save(rgba, "WEBP", quality=70))
frames = [base, base.transpose(Image.Transpose.FLIP_TOP_BOTTOM), photo(40, 26)]
put("webp_animated.webp", save(frames[0], "WEBP", save_all=True, append_images=frames[1:],
                               duration=100, lossless=True))
for o in range(1, 9):
    put(f"webp_o{o}.webp", save(base, "WEBP", quality=85, exif=exif(o)))

# --- GIF: palette, transparency, grey, interlace, animated ----------------
pal = base.quantize(colors=60)
put("gif_palette.gif", save(pal, "GIF"))
put("gif_transparent.gif", save(pal, "GIF", transparency=3))
put("gif_grey.gif", save(base.convert("L"), "GIF"))
put("gif_interlaced.GIF", save(pal, "GIF", interlace=True))
put("gif_2colour.gif", save(base.convert("1"), "GIF"))
put("gif_animated.gif", save(pal, "GIF", save_all=True,
                             append_images=[f.quantize(colors=30) for f in frames[1:]],
                             duration=100, loop=0))
# indices past a 4-colour table (8-bit LZW codes): Pillow reads its grey ramp there
short = Image.new("P", (40, 26))
short.putpalette([10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120])
short.putdata([(7 * i) % 256 for i in range(40 * 26)])
put("gif_short_palette.gif", save(short, "GIF", optimize=False))
# the first frame smaller than the screen, at an offset, with transparency:
# screen 40x26, frame 20x10 at (7, 5); Pillow fills the rest with the
# transparent index (here 2)
small = photo(20, 10).quantize(colors=16)
g = bytearray(save(small, "GIF", transparency=2))
# rewrite the logical screen size and the image position (GIF89a layout)
g[6:10] = struct.pack("<HH", 40, 26)
idx = g.index(b",")        # first image descriptor (after the GCE)
g[idx + 1:idx + 5] = struct.pack("<HH", 7, 5)
put("gif_offset_frame.gif", bytes(g))

# --- TIFF: compressions, modes, orientation -------------------------------
for comp in ("raw", "tiff_lzw", "tiff_adobe_deflate", "jpeg", "packbits"):
    put(f"tiff_rgb_{comp}.tif", save(base, "TIFF", compression=comp))
put("tiff_grey.tiff", save(base.convert("L"), "TIFF", compression="tiff_lzw"))
put("tiff_bilevel.TIF", save(base.convert("1"), "TIFF"))
put("tiff_g4.tif", save(base.convert("1"), "TIFF", compression="group4"))
put("tiff_rgba.tif", save(rgba, "TIFF", compression="tiff_adobe_deflate"))
put("tiff_palette.tif", save(pal, "TIFF"))
put("tiff_palette_lzw.tif", save(pal, "TIFF", compression="tiff_lzw"))
put("tiff_cmyk.tif", save(base.convert("CMYK"), "TIFF"))
grey16 = Image.fromarray((np.asarray(base.convert("L")).astype(np.uint16) * 3 + 40), "I;16")
put("tiff_grey16.tif", save(grey16, "TIFF"))
put("tiff_greyalpha.tif", save(base.convert("LA"), "TIFF"))
put("tiff_multipage.tif", save(base, "TIFF", save_all=True, append_images=[frames[1]]))
for o in range(1, 9):
    plain = save(base, "TIFF", compression="tiff_lzw")
    ref = Image.open(io.BytesIO(plain)).convert("RGB")
    if o in TRANSPOSE:
        ref = ref.transpose(TRANSPOSE[o])
    put(f"tiff_o{o}.tiff", save(base, "TIFF", compression="tiff_lzw", exif=exif(o)), ref)

# --- BMP: 1/4/8-bit palette, greyscale, 24 and 32 bit -------------------
put("bmp_1bit.bmp", save(base.convert("1"), "BMP"))
put("bmp_8bit_palette.bmp", save(pal, "BMP"))
put("bmp_grey.BMP", save(base.convert("L"), "BMP"))
put("bmp_24bit.bmp", save(base, "BMP"))
put("bmp_32bit.bmp", save(rgba, "BMP"))


def bmp4(im):
    """4-bit BMP (Pillow writes none): 16-colour palette, bottom-up rows."""
    q = im.quantize(colors=16)
    w, h = q.size
    idx = np.asarray(q)
    stride = ((w * 4 + 31) >> 3) & ~3
    rows = b""
    for y in range(h - 1, -1, -1):
        r = bytearray(stride)
        for x in range(w):
            r[x >> 1] |= int(idx[y, x]) << (4 if x % 2 == 0 else 0)
        rows += bytes(r)
    p = q.getpalette()[:48]
    palette = b"".join(bytes((p[3 * i + 2], p[3 * i + 1], p[3 * i], 0)) for i in range(16))
    off = 14 + 40 + len(palette)
    head = b"BM" + struct.pack("<IHHI", off + len(rows), 0, 0, off)
    dib = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 4, 0, len(rows), 2835, 2835, 16, 0)
    return head + dib + palette + rows


def bmp32_bitfields(im):
    """32-bit BMP, BITFIELDS in a 108-byte (v4) header, alpha mask, top-down."""
    a = np.asarray(im.convert("RGBA"))
    h, w = a.shape[:2]
    px = a[..., [2, 1, 0, 3]].tobytes()        # B G R A in memory
    off = 14 + 108
    head = b"BM" + struct.pack("<IHHI", off + len(px), 0, 0, off)
    dib = struct.pack("<IiiHHIIiiII", 108, w, -h, 1, 32, 3, len(px), 2835, 2835, 0, 0)
    dib += struct.pack("<IIII", 0xFF0000, 0xFF00, 0xFF, 0xFF000000) + b"sRGB" + b"\0" * 48
    return head + dib + px


put("bmp_4bit.bmp", bmp4(base))
put("bmp_short_palette.bmp", save(short, "BMP"))
put("bmp_32bit_bitfields_topdown.bmp", bmp32_bitfields(rgba))

# --- a square image compared pixel for pixel (SIZE x SIZE: resize = copy) -----
sq = photo(SIZE, SIZE)
put("square_png.png", save(sq, "PNG"))
put("square_webp.webp", save(sq, "WEBP", lossless=True))
put("square_tiff.tif", save(sq, "TIFF", compression="tiff_lzw"))
put("square_bmp.bmp", save(sq, "BMP"))
put("square_gif.gif", save(sq.quantize(colors=200), "GIF"))

# --- broken files of each format -----------------------------------------
def cut(data, k):
    return data[: max(1, len(data) * k // 10)]


good_files = {n: open(os.path.join(GOOD, n), "rb").read() for n in os.listdir(GOOD)}
bad("truncated.webp", cut(good_files["webp_lossy.webp"], 6))
bad("truncated.gif", cut(good_files["gif_palette.gif"], 5))
bad("truncated.tif", cut(good_files["tiff_rgb_raw.tif"], 5))
bad("truncated.bmp", cut(good_files["bmp_24bit.bmp"], 5))
bad("truncated.heic", b"\0\0\0\x18ftypheic\0\0\0\0mif1heic")
bad("garbage.HEIC", b"this is not a photo at all" * 8)
bad("garbage.avif", b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf" + b"\xff" * 64)
bad("empty.webp", b"")
bad("notgif.gif", b"GIF89a" + b"\xff" * 10)
bad("wrong.tiff", b"II*\0" + struct.pack("<I", 1 << 30) + b"\0" * 16)
bad("rle.bmp", bytes(bytearray(good_files["bmp_8bit_palette.bmp"][:30]) +
                     struct.pack("<I", 1) + good_files["bmp_8bit_palette.bmp"][34:]))
bad("photo.dib", b"BM" + b"\0" * 40)

np.savez(os.path.join(OUT, "expected.npz"), **expected)
print(f"imgcorpus: {len(good_files)} good files, {len(os.listdir(BAD))} bad files in {OUT}")
