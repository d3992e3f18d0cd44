"""Helpers shared by the end-to-end tests: read safetensors and .npy files
written by qformer, run the CLI, compare numbers."""
import json
import os
import struct
import subprocess
import sys
import zlib

import numpy as np

QF = os.environ.get("QF_BIN", "qformer")
FIX = os.environ.get("QF_FIXTURES", "tests/fixtures")

DT = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "U8": np.uint8, "I32": np.int32}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        payload = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(payload[a:b], dtype=DT[t["dtype"]]).reshape(t["shape"])
    return out


def run(*args, check=True, env=None):
    r = subprocess.run([QF, *args], capture_output=True, text=True, env=env)
    if check and r.returncode != 0:
        sys.exit(f"qformer {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")
    return r


def png_chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png_file(w, h, color_type=2, idat=None):
    """PNG bytes with the given IHDR; no IDAT when idat is None (a header-only
    file, e.g. a decompression bomb claiming w x h pixels)."""
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0))
    body = png_chunk(b"IDAT", idat) if idat is not None else b""
    return b"\x89PNG\r\n\x1a\n" + ihdr + body + png_chunk(b"IEND", b"")


def make_png(w, h, rng, color_type=2):
    """A w x h PNG of random pixels from rng (random.Random)."""
    ch = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    raw = b"".join(b"\0" + rng.randbytes(ch * w) for _ in range(h))
    return png_file(w, h, color_type, zlib.compress(raw, 1))


FAILS = []


def check(cond, what):
    if not cond:
        FAILS.append(what)
        print("FAIL:", what, file=sys.stderr)
    return cond


def done(name):
    n = len(FAILS)
    print(f"{name}: {'all checks passed' if n == 0 else f'{n} check(s) failed'}")
    sys.exit(1 if n else 0)
