#!/usr/bin/env python3
"""make_seeds.py - (re)writes the seed corpora tests/fuzz/corpus/<harness>/
from the fixtures plus small synthetic files (python3 standard library only;
the JPEG variants come from seed_jpeg.c, compiled with cc -ljpeg).
Deterministic: running it again gives the same files. Usage:
    python3 tests/fuzz/make_seeds.py [FIXTURES_DIR]
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
FX = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "fixtures")
ITM = os.path.join(FX, "tiny-blip2-itm")
OPT = os.path.join(FX, "tiny-blip2-opt")
CORPUS = os.path.join(HERE, "corpus")
SEP = b"\n=====\n"


def out(harness, name, data):
    d = os.path.join(CORPUS, harness)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


# ---- safetensors ----------------------------------------------------------

DT = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def safetensors(tensors, metadata=None, pad_to=8, gap=0):
    """tensors: list of (name, dtype, shape, bytes); payload in list order."""
    header, payload = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, data in tensors:
        payload += b"\0" * gap
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(payload), len(payload) + len(data)]}
        payload += data
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((-(8 + len(h))) % pad_to)
    return struct.pack("<Q", len(h)) + h + payload


def st_header_from_fixture(path, max_bytes=256, max_tensors=8):
    """Small real tensors (names, dtypes, shapes, bytes) of a fixture file."""
    raw = read(path)
    (hlen,) = struct.unpack("<Q", raw[:8])
    hdr = json.loads(raw[8:8 + hlen])
    base = 8 + hlen
    picked = []
    for name, e in hdr.items():
        if name == "__metadata__":
            continue
        b, en = e["data_offsets"]
        if en - b <= max_bytes:
            picked.append((name, e["dtype"], e["shape"], raw[base + b:base + en]))
        if len(picked) == max_tensors:
            break
    return safetensors(picked, hdr.get("__metadata__"))


def seeds_st_header():
    f32 = struct.pack("<6f", 1, 2, 3, -4, 0.5, 1e30)
    f16 = struct.pack("<4H", 0x3C00, 0xC000, 0x7C00, 0x0001)
    bf16 = struct.pack("<4H", 0x3F80, 0xBF80, 0x7FC0, 0)
    out("st_header", "empty", safetensors([]))
    out("st_header", "mixed", safetensors(
        [("a.weight", "F32", [2, 3], f32), ("b", "F16", [4], f16), ("c", "BF16", [2, 2], bf16),
         ("ids", "I64", [2], struct.pack("<2q", 5, -1)), ("px", "U8", [3], b"\1\2\3")],
        {"format": "pt"}))
    # U8 first so the F32 after it is unaligned in the file (the reader copies it)
    out("st_header", "unaligned", safetensors(
        [("u", "U8", [1], b"\7"), ("f", "F32", [2], struct.pack("<2f", 1.5, -2.5)),
         ("h", "F16", [1], struct.pack("<H", 0x3C00))], pad_to=1))
    out("st_header", "empty_and_scalar", safetensors(
        [("z", "F32", [0, 5], b""), ("s", "F32", [], struct.pack("<f", 3.0)), ("z2", "I8", [3, 0], b"")]))
    out("st_header", "all_dtypes", safetensors(
        [("f64", "F64", [1], struct.pack("<d", 2.0)), ("i32", "I32", [2], struct.pack("<2i", 1, -1)),
         ("i16", "I16", [1], struct.pack("<h", -3)), ("i8", "I8", [2], b"\x80\x7f"),
         ("b", "BOOL", [2], b"\0\1"), ("dims8", "F32", [1, 1, 1, 1, 1, 1, 1, 1], struct.pack("<f", 1))]))
    out("st_header", "gaps", safetensors(
        [("a", "F32", [1], struct.pack("<f", 1)), ("b", "F32", [1], struct.pack("<f", 2))], gap=4))
    out("st_header", "fixture_itm", st_header_from_fixture(os.path.join(ITM, "model.safetensors")))
    out("st_header", "fixture_opt_f16",
        st_header_from_fixture(os.path.join(OPT, "model-00002-of-00002.safetensors")))
    out("st_header", "fixture_expected", st_header_from_fixture(os.path.join(ITM, "expected.safetensors")))


def seeds_st_index():
    s1, s2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    good = {"a": s1, "b": s1, "e": s1, "c": s2, "d": s2}
    out("st_index", "full", json.dumps({"metadata": {"total_size": 64}, "weight_map": good}, indent=2))
    out("st_index", "one_shard", json.dumps({"weight_map": {"a": s1, "b": s1}}))
    out("st_index", "missing_tensor", json.dumps({"weight_map": {"a": s1, "x": s2}}))
    out("st_index", "wrong_shard", json.dumps({"weight_map": {"a": s2, "c": s2}}))
    out("st_index", "bad_names", json.dumps({"weight_map": {"a": "../" + s1, "c": "."}}))
    out("st_index", "no_shard", json.dumps({"weight_map": {"a": "model-00003-of-00003.safetensors"}}))
    idx = json.loads(read(os.path.join(OPT, "model.safetensors.index.json")))
    names = list(idx["weight_map"].items())[:6]
    out("st_index", "fixture_slice", json.dumps({"metadata": idx["metadata"], "weight_map": dict(names)},
                                                indent=2))


# ---- configs ----------------------------------------------------------------

def seeds_config():
    out("config", "itm", read(os.path.join(ITM, "config.json")))
    out("config", "opt", read(os.path.join(OPT, "config.json")))
    out("config", "minimal", json.dumps({"vision_config": {}, "qformer_config": {}}))
    out("config", "odd_types", json.dumps({
        "architectures": ["Blip2ForImageTextRetrieval"], "num_query_tokens": 8.0,
        "vision_config": {"hidden_size": 64, "num_attention_heads": 4, "image_size": 28, "patch_size": 14,
                          "qkv_bias": False, "layer_norm_eps": 1e-5},
        "qformer_config": {"hidden_size": 32, "num_attention_heads": 2, "use_qformer_text_input": True},
        "text_config": {"model_type": "opt", "hidden_size": 16, "num_attention_heads": 2,
                        "activation_function": "gelu", "_remove_final_layer_norm": True}}))


def seeds_preproc():
    out("preproc", "fixture", read(os.path.join(ITM, "preprocessor_config.json")))
    out("preproc", "size_int", json.dumps({"size": 8, "image_mean": 0.5, "image_std": [0.5, 0.25, 1]}))
    out("preproc", "size_list", json.dumps({"size": [5, 7], "do_rescale": False, "rescale_factor": 2}))
    out("preproc", "no_resize", json.dumps({"do_resize": False, "size": {"height": 5, "width": 7},
                                            "resample": 2, "do_normalize": 0}))
    out("preproc", "shortest_edge", json.dumps({"size": {"shortest_edge": 224}}))
    out("preproc", "nulls", json.dumps({"size": None, "resample": None, "image_mean": None,
                                        "do_convert_rgb": None}))


# ---- images -------------------------------------------------------------------

def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def png(w, h, ctype, depth, interlace=0, plte=None, extra=b""):
    """A PNG of a deterministic pattern (samples as `depth`-bit values)."""
    ch = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[ctype]
    maxv = (1 << depth) - 1

    def sample(x, y, c):
        return (x * 7 + y * 13 + c * 5) % (maxv + 1) if ctype == 3 else ((x * 37 + y * 59 + c * 83) * 257) % (maxv + 1)

    def row_bytes(xs, y):
        if depth < 8:
            bits, nb = 0, 0
            outb = bytearray()
            for x in xs:
                bits = (bits << depth) | sample(x, y, 0)
                nb += depth
                if nb == 8:
                    outb.append(bits)
                    bits, nb = 0, 0
            if nb:
                outb.append(bits << (8 - nb))
            return bytes(outb)
        outb = bytearray()
        for x in xs:
            for c in range(ch):
                v = sample(x, y, c)
                outb += struct.pack(">H", v) if depth == 16 else bytes([v])
        return bytes(outb)

    raw = bytearray()
    if interlace:
        for x0, y0, dx, dy in ADAM7:
            xs = list(range(x0, w, dx))
            if not xs:
                continue
            for y in range(y0, h, dy):
                raw += b"\0" + row_bytes(xs, y)
    else:
        for y in range(h):
            raw += b"\0" + row_bytes(range(w), y)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, interlace)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
    if plte is not None:
        data += png_chunk(b"PLTE", plte)
    data += extra + png_chunk(b"IDAT", zlib.compress(bytes(raw), 9)) + png_chunk(b"IEND", b"")
    return data


def seeds_image(tmp):
    for d, tag in ((ITM, ""), (OPT, "opt_")):
        for f in sorted(os.listdir(os.path.join(d, "inputs"))):
            if f.endswith((".png", ".jpg")) and (not tag or f.endswith(".jpg")):
                out("image", tag + f, read(os.path.join(d, "inputs", f)))
    pal = bytes(range(0, 48))
    out("image", "grey1_9x3.png", png(9, 3, 0, 1))
    out("image", "grey2_5x4.png", png(5, 4, 0, 2))
    out("image", "grey4_3x3.png", png(3, 3, 0, 4))
    out("image", "grey16_4x4.png", png(4, 4, 0, 16))
    out("image", "greyalpha16_3x2.png", png(3, 2, 4, 16))
    out("image", "greyalpha8_3x2.png", png(3, 2, 4, 8))
    out("image", "rgb16_3x3.png", png(3, 3, 2, 16))
    out("image", "rgba16_2x2.png", png(2, 2, 6, 16))
    out("image", "pal4_short_plte_6x5.png", png(6, 5, 3, 4, plte=pal[:9]))
    out("image", "pal2_trns_4x4.png", png(4, 4, 3, 2, plte=pal[:12], extra=png_chunk(b"tRNS", b"\0\x80")))
    out("image", "interlaced_rgb_11x9.png", png(11, 9, 2, 8, interlace=1))
    out("image", "interlaced_grey1_10x10.png", png(10, 10, 0, 1, interlace=1))
    out("image", "gama_srgb_3x3.png", png(3, 3, 2, 8, extra=png_chunk(b"gAMA", struct.pack(">I", 45455)) +
                                              png_chunk(b"sBIT", b"\5\6\5")))
    cc = os.environ.get("CC", "cc")
    exe = os.path.join(tmp, "seed_jpeg")
    subprocess.run([cc, "-O1", os.path.join(HERE, "seed_jpeg.c"), "-o", exe, "-ljpeg"], check=True)
    jd = os.path.join(tmp, "jpeg")
    os.makedirs(jd)
    subprocess.run([exe, jd], check=True)
    for f in sorted(os.listdir(jd)):
        out("image", f, read(os.path.join(jd, f)))


# ---- tokenizers -------------------------------------------------------------

def seeds_wordpiece():
    texts = json.loads(read(os.path.join(ITM, "inputs", "texts.json")))
    for i, t in enumerate(texts):
        out("wordpiece", "fixture_%d" % i, t if isinstance(t, str) else t.get("text", ""))
    extra = [
        "[CLS] hello [SEP] [DEC]x[dec] [MASK][PAD]",
        "Na\u00efve CAF\u00c9 \u0130stanbul \u03a3\u03a3 \u00df\u00dd",
        "\u4e2d\u6587\u5b57 \u3072\u3089\u304c\u306a \ud55c\uad6d\uc5b4 \U00020000x",
        "a" * 101 + " " + "b" * 99,
        "tab\there\r\nnl\u2028ls\u00a0nbsp\u200bzw\x01ctl\ufffd",
        "e\u0301 a\u0300\u0316 \ufb01 \u2460 \u00bd",
        "don't stop-me now!!! (ok) [x] #1 $2.50 100%",
        "\U0001f600\U0001f44d\U0001f3fd emoji",
    ]
    for i, t in enumerate(extra):
        out("wordpiece", "extra_%d" % i, t)


def seeds_spm_encode():
    exp = json.loads(read(os.path.join(FX, "tiny-blip2-flan-t5", "expected.json")))
    for e in exp["spm"]:
        out("spm_encode", "fixture_%d" % e["index"], e["text"])
    extra = [
        "</s><pad> </s>x<unk>", "<extra_id_0><extra_id_99><extra_id_100><extra_id_07>", "a </s>",
        "  leading\n\n\ttabs  \n", "\u00a0\u2003\u3000 wide \uff21\ufb01", "\U0001f600 emoji <",
    ]
    for i, t in enumerate(extra):
        out("spm_encode", "extra_%d" % i, t)


def seeds_bpe_encode():
    exp = json.loads(read(os.path.join(OPT, "expected.json")))
    for e in exp["bpe"]:
        out("bpe_encode", "fixture_%d" % e["index"], e["text"])
    extra = [
        "</s><pad> </s>x<pad>", "it's we'll they'D I'M 'll", "  leading\n\n\ttabs  \n", "trailing   ",
        "\u00a0\u2003\u3000 wide spaces", "\U0001f600\U0001f44d\U0001f3fd emoji", "a\0b\0", "\u0101\u0100 123 4.5",
        "\u4e2d\u6587 \u0645\u0631\u062d\u0628\u0627",
    ]
    for i, t in enumerate(extra):
        out("bpe_encode", "extra_%d" % i, t)


def seeds_bpe_decode():
    exp = json.loads(read(os.path.join(OPT, "expected.json")))
    for e in exp["bpe"]:
        for flags in (0, 3):
            out("bpe_decode", "fixture_%d_%d" % (e["index"], flags),
                bytes([flags]) + struct.pack("<%di" % len(e["input_ids"]), *e["input_ids"]))
    for i, c in enumerate(exp.get("captions", [])[:3]):
        ids = c.get("noprompt", {}).get("greedy_ids") if isinstance(c, dict) else None
        if ids:
            out("bpe_decode", "caption_%d" % i, bytes([3]) + struct.pack("<%di" % len(ids), *ids))
    out("bpe_decode", "invalid_ids", bytes([0]) + struct.pack("<4i", -1, 2, 1 << 30, 50264))
    out("bpe_decode", "folded", bytes([7]) + bytes(range(64)))
    # byte tokens that form broken UTF-8 (0xC3 alone, 0xE4 0xB8 cut short)
    out("bpe_decode", "broken_utf8", bytes([2]) + struct.pack("<5i", 2, 7471, 10, 1437, 4))


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def seeds_bert_load():
    lines = read(os.path.join(ITM, "vocab.txt")).decode("utf-8").split("\n")
    cfg = read(os.path.join(ITM, "tokenizer_config.json"))
    added = read(os.path.join(ITM, "added_tokens.json"))
    smap = read(os.path.join(ITM, "special_tokens_map.json"))
    # specials + punctuation/letters + the first ~700 words (ids change: fine)
    small = lines[0:1] + lines[100:104] + lines[999:1700]
    vocab = ("\n".join(small) + "\n").encode()
    out("bert_load", "fixture_slice", vocab + SEP + cfg + SEP + added.replace(b"30522", b"706") + SEP + smap)
    out("bert_load", "vocab_only", vocab)
    syn = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n##s\nworld\n,\n!\na\n##b\n\u4e2d\ncaf\u00e9\r\nx\ry\n"
    out("bert_load", "synthetic", syn.encode() + SEP + json.dumps({
        "do_lower_case": False, "strip_accents": True, "tokenize_chinese_chars": False,
        "bos_token": {"content": "[DEC]"}, "additional_special_tokens": ["hello", {"content": "[X]"}],
        "added_tokens_decoder": {"20": {"content": "[DEC]", "special": True}}}).encode() + SEP +
        json.dumps({"[X]": 21, "[DEC]": 20}).encode() + SEP +
        json.dumps({"unk_token": "[UNK]", "cls_token": {"content": "[CLS]"}, "mask_token": None}).encode())
    out("bert_load", "crlf_no_final_newline", b"[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\nab")


def seeds_bpe_load():
    b2u = bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    merges = ["#version: 0.2", "\u0120 t", "h e", "\u0120t he", "l l", "e ll", "h ell", "hell o", "\u0120 w",
              "o r", "\u0120w or", "\u0120wor l", "\u0120worl d", "' s"]
    for m in merges[1:]:
        vocab.setdefault(m.replace(" ", ""), len(vocab))
    vocab["</s>"] = len(vocab)
    vocab["<pad>"] = len(vocab)
    cfg = {"add_bos_token": True, "add_prefix_space": True, "clean_up_tokenization_spaces": True,
           "bos_token": "</s>", "eos_token": {"content": "</s>", "lstrip": False}, "unk_token": "</s>",
           "pad_token": "<pad>", "model_max_length": 1e30,
           "additional_special_tokens": [{"content": "<img>", "lstrip": True, "rstrip": True}],
           "added_tokens_decoder": {"300": {"content": "<extra>", "rstrip": True}}}
    smap = {"pad_token": "<pad>", "mask_token": {"content": "<mask>"}}
    added = {"<new>": 301.0, "<pad>": 257}
    out("bpe_load", "synthetic", json.dumps(vocab).encode() + SEP + ("\n".join(merges) + "\n").encode() +
        SEP + json.dumps(cfg).encode() + SEP + json.dumps(smap).encode() + SEP + json.dumps(added).encode())
    out("bpe_load", "gpt2_defaults", json.dumps(vocab).encode() + SEP + ("\n".join(merges)).encode())
    fv = json.loads(read(os.path.join(OPT, "vocab.json")))
    fvs = {k: v for k, v in fv.items() if v < 400}
    fm = read(os.path.join(OPT, "merges.txt")).decode("utf-8").split("\n")[:300]
    out("bpe_load", "fixture_slice", json.dumps(fvs, ensure_ascii=False).encode() + SEP +
        ("\n".join(fm) + "\n").encode() + SEP + read(os.path.join(OPT, "tokenizer_config.json")) + SEP +
        read(os.path.join(OPT, "special_tokens_map.json")))


def main():
    if os.path.isdir(CORPUS):
        shutil.rmtree(CORPUS)
    seeds_st_header()
    seeds_st_index()
    seeds_config()
    seeds_preproc()
    seeds_wordpiece()
    seeds_bpe_encode()
    seeds_spm_encode()
    seeds_bpe_decode()
    seeds_bert_load()
    seeds_bpe_load()
    with tempfile.TemporaryDirectory() as tmp:
        seeds_image(tmp)
    total = 0
    for dp, _, fs in os.walk(CORPUS):
        total += sum(os.path.getsize(os.path.join(dp, f)) for f in fs)
    print("make_seeds: %d bytes in %s" % (total, CORPUS))


if __name__ == "__main__":
    main()
