#!/usr/bin/env python3
"""hubserver.py - a local stand-in for the Hugging Face hub, for tests/e2e/pull.sh.

Serves folders in the hub's URL layout on 127.0.0.1 (a free port, written to
--port-file once listening):
  GET /api/models/ORG/NAME/revision/REV[?blobs=true]   listing JSON ("sha", "siblings"
      with "size", "blobId" and, for LFS files, "lfs": {"sha256", "size", "pointerSize"})
  GET /ORG/NAME/resolve/REV/FILE   the file; LFS files answer 302 to /_lfs/SHA256 as
      the hub redirects to its CDN. Range requests give 206 (or 416).
Unknown repos give 404 (X-Error-Code: RepoNotFound), unknown revisions and files
404 RevisionNotFound / EntryNotFound. Fault switches:
  --cut FILE[:N]     the first N (default 1) downloads of FILE stop halfway
                     (the full Content-Length is promised, then the socket closes)
  --corrupt FILE     FILE is served with one byte flipped (hash mismatch)
  --no-range         ignore Range headers (answer 200 with the whole file)
  --rate BYTES       send file bodies at about BYTES per second (progress bars)
  --gated REPO=TOK   REPO's files need "Authorization: Bearer TOK" (401 without,
                     403 wrong; X-Error-Code: GatedRepo); its listing stays public
Every request is appended to --log as "METHOD PATH range=R auth=yes|no -> STATUS".
"""
import argparse
import hashlib
import json
import os
import re
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LFS_SUFFIXES = (".safetensors", ".bin", ".h5", ".msgpack", ".onnx", ".pth")


def scan(folder):
    """name -> (abs path, size, git blob id, sha256 or None) for every file under folder."""
    out = {}
    for root, _, names in os.walk(folder):
        for n in names:
            p = os.path.join(root, n)
            rel = os.path.relpath(p, folder).replace(os.sep, "/")
            data = open(p, "rb").read()
            blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
            lfs = hashlib.sha256(data).hexdigest() if rel.endswith(LFS_SUFFIXES) else None
            out[rel] = (p, len(data), blob, lfs)
    return out


class Hub:
    def __init__(self, args):
        self.repos = {}
        for spec in args.repo:
            rid, folder = spec.split("=", 1)
            files = scan(folder)
            sha = hashlib.sha1(json.dumps(sorted((k, v[2]) for k, v in files.items())).encode()).hexdigest()
            self.repos[rid] = {"files": files, "sha": sha}
        self.lfs = {}
        for r in self.repos.values():
            for name, f in r["files"].items():
                if f[3]:
                    self.lfs[f[3]] = (name, f)
        self.cuts = {}
        for c in args.cut:
            name, _, n = c.partition(":")
            self.cuts[name] = int(n or 1)
        self.corrupt = set(args.corrupt)
        self.no_range = args.no_range
        self.rate = args.rate
        self.gated = dict(g.split("=", 1) for g in args.gated)
        self.log = open(args.log, "a", buffering=1) if args.log else None
        self.lock = threading.Lock()

    def take_cut(self, name):
        with self.lock:
            if self.cuts.get(name, 0) > 0:
                self.cuts[name] -= 1
                return True
            return False


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub = None

    def log_message(self, fmt, *a):
        pass

    def note(self, status):
        if self.hub.log:
            rng = self.headers.get("Range", "-")
            auth = "yes" if self.headers.get("Authorization") else "no"
            self.hub.log.write("%s %s range=%s auth=%s -> %d\n" % (self.command, self.path, rng, auth, status))

    def reply(self, status, body=b"", ctype="application/json", headers=()):
        self.note(status)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def error(self, status, code, msg):
        self.reply(status, json.dumps({"error": msg}).encode(),
                   headers=(("X-Error-Code", code), ("X-Error-Message", msg)))

    def auth_ok(self, rid):
        tok = self.hub.gated.get(rid)
        if tok is None:
            return True
        got = self.headers.get("Authorization")
        if not got:
            self.error(401, "GatedRepo", "Access to model %s is restricted. You must be authenticated." % rid)
            return False
        if got != "Bearer " + tok:
            self.error(403, "GatedRepo", "Access to model %s is restricted and you are not in the authorized list." % rid)
            return False
        return True

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/revision/(.+)", path)
        if m:
            return self.api(m.group(1), m.group(2), "blobs=true" in url.query)
        m = re.fullmatch(r"/_lfs/([0-9a-f]{64})", path)
        if m and m.group(1) in self.hub.lfs:
            name, f = self.hub.lfs[m.group(1)]
            return self.send_file(name, f)
        m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if m:
            return self.resolve(m.group(1), m.group(2), m.group(3))
        self.error(404, "NotFound", "no route for %s" % path)

    def repo(self, rid, rev, check_auth):
        r = self.hub.repos.get(rid)
        if r is None:
            self.error(404, "RepoNotFound", "Repository not found")
            return None
        if check_auth and not self.auth_ok(rid):   # like the hub: gated listings are public
            return None
        if rev not in ("main", r["sha"]):
            self.error(404, "RevisionNotFound", "Invalid rev id: %s" % rev)
            return None
        return r

    def api(self, rid, rev, blobs):
        r = self.repo(rid, rev, False)
        if r is None:
            return
        sib = []
        for name, (_, size, blob, lfs) in sorted(r["files"].items()):
            e = {"rfilename": name}
            if blobs:
                e["blobId"] = blob
                e["size"] = size
                if lfs:
                    e["lfs"] = {"sha256": lfs, "size": size, "pointerSize": 134}
            sib.append(e)
        body = {"_id": r["sha"][:24], "id": rid, "modelId": rid, "sha": r["sha"], "private": False,
                "gated": "manual" if rid in self.hub.gated else False, "siblings": sib}
        self.reply(200, json.dumps(body).encode())

    def resolve(self, rid, rev, name):
        r = self.repo(rid, rev, True)
        if r is None:
            return
        f = r["files"].get(name)
        if f is None:
            return self.error(404, "EntryNotFound", "%s does not exist on \"%s\"" % (name, rev))
        if f[3]:
            return self.reply(302, b"", "text/plain", (("Location", "/_lfs/" + f[3]), ("X-Linked-Size", str(f[1]))))
        self.send_file(name, f)

    def send_file(self, name, f):
        data = bytearray(open(f[0], "rb").read())
        if name in self.hub.corrupt and data:
            data[len(data) // 2] ^= 0xFF
        size = len(data)
        start, end, status = 0, size - 1, 200
        rng = self.headers.get("Range")
        if rng and not self.hub.no_range:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
            if m:
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                if start >= size:
                    self.note(416)
                    self.send_response(416)
                    self.send_header("Content-Range", "bytes */%d" % size)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
        body = bytes(data[start:end + 1])
        cut = self.hub.take_cut(name)
        self.note(status)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, size))
        self.end_headers()
        if cut:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        try:
            if self.hub.rate:
                step = max(1, self.hub.rate // 20)
                for i in range(0, len(body), step):
                    self.wfile.write(body[i:i + step])
                    self.wfile.flush()
                    time.sleep(0.05)
            else:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True    # the client went away (or was killed): fine


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", action="append", default=[], help="ORG/NAME=FOLDER")
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log")
    ap.add_argument("--cut", action="append", default=[])
    ap.add_argument("--corrupt", action="append", default=[])
    ap.add_argument("--no-range", action="store_true")
    ap.add_argument("--rate", type=int, default=0)
    ap.add_argument("--gated", action="append", default=[])
    args = ap.parse_args()
    Handler.hub = Hub(args)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.replace(tmp, args.port_file)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
