#!/usr/bin/env python3
"""pytorch_bench.py - the `qformer bench` measurement with PyTorch (Debian's
python3-torch, what a user would run instead): the same full-size shapes
(EVA ViT-g/14 at 224 + BERT-base Q-Former with 32 queries and cross-attention
every 2 layers + ITC projection; OPT-2.7B prefill of 40 rows and greedy
decode with a KV cache) on random weights, written in plain torch.nn so that
no transformers install is needed. Prints one JSON object with the keys of
`qformer bench --format json` that it measures (image_s, prefill_tok_s,
decode_tok_s, peak_rss_mb, gflops); the others are null.

    python3 bench/pytorch_bench.py [--threads N] [--dtype f32|bf16] [--only embed|opt] [--repeat R]

Thread pools: torch.set_num_threads(N) sets the intra-op pool; run it as a
user would, and again with OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=N to see the
pools tuned (the issue quotes both)."""
import argparse
import json
import math
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

DV, IV, LV, HV, NV = 1408, 6144, 39, 16, 257
DQ, IQ, LQ, HQ, NQ, EMB = 768, 3072, 12, 12, 32, 256
DO, FO, LO, HO, VO = 2560, 10240, 32, 32, 50272


class Attn(nn.Module):
    def __init__(self, d, heads, d_kv=None):
        super().__init__()
        self.h = heads
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d_kv or d, d)
        self.v = nn.Linear(d_kv or d, d)
        self.o = nn.Linear(d, d)

    def forward(self, x, kv):
        B, L, D = x.shape
        q = self.q(x).view(B, L, self.h, -1).transpose(1, 2)
        k = self.k(kv).view(B, kv.shape[1], self.h, -1).transpose(1, 2)
        v = self.v(kv).view(B, kv.shape[1], self.h, -1).transpose(1, 2)
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1) @ v
        return self.o(a.transpose(1, 2).reshape(B, L, D))


class VitLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(DV, eps=1e-6), nn.LayerNorm(DV, eps=1e-6)
        self.qkv, self.proj = nn.Linear(DV, 3 * DV), nn.Linear(DV, DV)
        self.fc1, self.fc2 = nn.Linear(DV, IV), nn.Linear(IV, DV)

    def forward(self, x):
        B, N, D = x.shape
        qkv = self.qkv(self.ln1(x)).view(B, N, 3, HV, D // HV).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D // HV), dim=-1) @ v
        x = x + self.proj(a.transpose(1, 2).reshape(B, N, D))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class QLayer(nn.Module):
    def __init__(self, cross):
        super().__init__()
        self.self_attn, self.ln1 = Attn(DQ, HQ), nn.LayerNorm(DQ, eps=1e-12)
        self.cross = Attn(DQ, HQ, DV) if cross else None
        self.ln2 = nn.LayerNorm(DQ, eps=1e-12) if cross else None
        self.fi, self.fo, self.ln3 = nn.Linear(DQ, IQ), nn.Linear(IQ, DQ), nn.LayerNorm(DQ, eps=1e-12)

    def forward(self, x, enc):
        x = self.ln1(x + self.self_attn(x, x))
        if self.cross is not None:
            x = self.ln2(x + self.cross(x, enc))
        return self.ln3(x + self.fo(F.gelu(self.fi(x))))


class ImageEmbedder(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, DV, 14, 14)
        self.cls = nn.Parameter(torch.randn(1, 1, DV) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, NV, DV) * 0.02)
        self.vit = nn.ModuleList(VitLayer() for _ in range(LV))
        self.post_ln = nn.LayerNorm(DV, eps=1e-6)
        self.query = nn.Parameter(torch.randn(1, NQ, DQ) * 0.02)
        self.q_ln = nn.LayerNorm(DQ, eps=1e-12)
        self.qformer = nn.ModuleList(QLayer(l % 2 == 0) for l in range(LQ))
        self.vproj = nn.Linear(DQ, EMB)

    def forward(self, pixels):
        x = self.patch(pixels).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        for layer in self.vit:
            x = layer(x)
        vis = self.post_ln(x)
        q = self.q_ln(self.query.expand(x.shape[0], -1, -1))
        for layer in self.qformer:
            q = layer(q, vis)
        return F.normalize(self.vproj(q), dim=-1)


class OptLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(DO), nn.LayerNorm(DO)
        self.q, self.k, self.v, self.o = (nn.Linear(DO, DO) for _ in range(4))
        self.fc1, self.fc2 = nn.Linear(DO, FO), nn.Linear(FO, DO)

    def forward(self, x, cache):
        B, T, D = x.shape
        h = self.ln1(x)
        q = (self.q(h) / math.sqrt(D // HO)).view(B, T, HO, -1).transpose(1, 2)
        k = self.k(h).view(B, T, HO, -1).transpose(1, 2)
        v = self.v(h).view(B, T, HO, -1).transpose(1, 2)
        if cache:
            k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
        cache[:] = [k, v]
        s = q @ k.transpose(-1, -2)
        if T > 1:
            s = s + torch.full((T, k.shape[2]), float("-inf")).triu(k.shape[2] - T + 1).to(s.dtype)
        a = torch.softmax(s, dim=-1) @ v
        x = x + self.o(a.transpose(1, 2).reshape(B, T, D))
        return x + self.fc2(F.relu(self.fc1(self.ln2(x))))


class Opt(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VO, DO)
        self.pos = nn.Embedding(2050, DO)
        self.layers = nn.ModuleList(OptLayer() for _ in range(LO))
        self.ln = nn.LayerNorm(DO)

    def forward(self, x, caches, start):
        x = x + self.pos(torch.arange(start, start + x.shape[1]) + 2)
        for layer, c in zip(self.layers, caches):
            x = layer(x, c)
        return self.ln(x[:, -1]) @ self.embed.weight.t()


def image_flops():
    N, D = NV, DV
    vit = 2 * 256 * 588 * D + LV * (2 * N * D * 3 * D + 4 * N * N * D + 2 * N * D * D + 4 * N * D * IV)
    self_ = 8 * NQ * DQ * DQ + 4 * NQ * NQ * DQ
    cross = 4 * NQ * DQ * DQ + 4 * N * D * DQ + 4 * NQ * N * DQ
    return vit + LQ * (self_ + 4 * NQ * DQ * IQ) + 6 * cross + 2 * NQ * DQ * EMB


def timed(fn, repeat):
    fn()                                              # warm-up
    t = []
    for _ in range(repeat):
        a = time.perf_counter()
        fn()
        t.append(time.perf_counter() - a)
    return statistics.median(t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--only", choices=["embed", "opt"])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--decode-tokens", type=int, default=16)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dt = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    out = dict(image_s=None, text_ms=None, itm_pair_ms=None, prefill_tok_s=None, decode_tok_s=None,
               peak_rss_mb=None, gflops=None, threads=a.threads, dtype=a.dtype,
               torch=torch.__version__, load_avg=os.getloadavg()[0])
    with torch.inference_mode():
        if a.only in (None, "embed"):
            m = ImageEmbedder().to(dt).eval()
            px = torch.randn(1, 3, 224, 224, dtype=dt)
            out["image_s"] = timed(lambda: m(px), a.repeat)
            out["gflops"] = image_flops() / out["image_s"] / 1e9
            print("pytorch_bench: image %.3f s" % out["image_s"], file=sys.stderr)
            del m
        if a.only in (None, "opt"):
            m = Opt().to(dt).eval()
            prefix = torch.randn(1, 40, DO, dtype=dt)

            def prefill():
                caches = [[] for _ in range(LO)]
                return m(prefix, caches, 0), caches

            out["prefill_tok_s"] = 40 / timed(prefill, a.repeat)
            times = []
            for _ in range(a.repeat):
                logits, caches = prefill()
                t0 = time.perf_counter()
                for s in range(a.decode_tokens):
                    tok = logits.argmax(-1)
                    logits = m(m.embed(tok)[:, None], caches, 40 + s)
                times.append(time.perf_counter() - t0)
            out["decode_tok_s"] = a.decode_tokens / statistics.median(times)
            print("pytorch_bench: prefill %.2f tok/s, decode %.3f tok/s"
                  % (out["prefill_tok_s"], out["decode_tok_s"]), file=sys.stderr)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


if __name__ == "__main__":
    main()
