#!/usr/bin/env bash
# fresh-debian.sh [COMMIT] - proves the README on a machine that has nothing:
# a Debian 12 root filesystem made with `debootstrap --variant=minbase` (plus
# only git and ca-certificates), a `git clone` of COMMIT (default HEAD) inside
# it, and there the README's two commands exactly as written:
#
#     ./scripts/demo.sh        (set up + the main job)
#     ./scripts/test.sh        (all tests)
#
# The pristine base is built once and cached under $QF_CI_CACHE (default
# /var/tmp/qformer-ci); each run works on a fresh copy of it that is deleted
# afterwards. Downloaded .deb files are kept between runs in the cache (they
# are only the package files: every package is still installed by the
# project's own setup in every run). /proc, /dev, /dev/pts, /dev/shm and /sys
# are mounted for the run and always unmounted, on failure and on signals too.
#
# Needs root (chroot, mount) and debootstrap (installed here when missing).
# Environment: QF_CI_CACHE, QF_CI_MIRROR (default: the host's Debian mirror),
# QF_CI_KEEP=1 keeps the run's root for inspection.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
commit=$(git -C "$here" rev-parse "${1:-HEAD}")
cache=${QF_CI_CACHE:-/var/tmp/qformer-ci}
suite=bookworm
base="$cache/base-$suite-minbase"
debs="$cache/apt-archives"

log() { echo "fresh-debian: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
  log "needs root (debootstrap, chroot, mount)"; exit 1
fi
if ! command -v debootstrap >/dev/null; then
  log "installing debootstrap on the host"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

mirror=${QF_CI_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  mirror=${mirror:-http://deb.debian.org/debian}
fi

# --- the pristine base, built once ------------------------------------------
# Built in a temporary folder and renamed into place, so an interrupted build
# never leaves a half-made base that later runs would trust.
mkdir -p "$cache" "$debs/partial"
if [ ! -f "$base/.qf-complete" ]; then
  tmp="$cache/base.tmp.$$"
  rm -rf "$tmp" "$base"
  log "debootstrap --variant=minbase $suite from $mirror (cached in $base)"
  t0=$SECONDS
  ok=0
  for attempt in 1 2; do
    if debootstrap --variant=minbase --include=git,ca-certificates "$suite" "$tmp" "$mirror" \
         > "$cache/debootstrap.log" 2>&1; then ok=1; break; fi
    log "debootstrap attempt $attempt failed (log: $cache/debootstrap.log)"; rm -rf "$tmp"
  done
  [ "$ok" = 1 ] || { tail -20 "$cache/debootstrap.log" >&2; exit 1; }
  # The machine's package sources and apt settings, as every Debian machine of
  # this workplace has them (debootstrap writes only "$suite main").
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    cp /etc/apt/sources.list.d/debian.sources "$tmp/etc/apt/sources.list.d/"
    rm -f "$tmp/etc/apt/sources.list"
  fi
  for f in /etc/apt/apt.conf.d/99artifact-registry; do
    [ -f "$f" ] && cp "$f" "$tmp/etc/apt/apt.conf.d/"
  done
  rm -rf "$tmp/var/cache/apt/archives"/*.deb
  touch "$tmp/.qf-complete"
  mv "$tmp" "$base"
  log "base ready in $((SECONDS - t0)) s"
fi

# --- a fresh copy for this run ------------------------------------------------
root="$cache/run.$$"
mounted=()
cleanup() {
  local rc=$?
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" 2>/dev/null || true
  done
  if [ "${QF_CI_KEEP:-0}" = 1 ]; then
    log "kept $root"
  else
    # only delete once nothing is mounted inside any more
    if ! grep -q " $root/" /proc/mounts; then rm -rf "$root"; else log "left $root: still mounted"; fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

t0=$SECONDS
cp -a "$base" "$root"
for f in /etc/resolv.conf /etc/hosts; do cp "$f" "$root$f" 2>/dev/null || true; done
domount() { # domount TARGET mount-args...
  local target=$1; shift
  mkdir -p "$target"
  mount "$@" "$target"
  mounted+=("$target")
}
domount "$root/proc" -t proc proc
domount "$root/sys" --bind /sys
domount "$root/dev" --bind /dev
domount "$root/dev/pts" --bind /dev/pts
domount "$root/dev/shm" -t tmpfs -o mode=1777 shm
domount "$root/var/cache/apt/archives" --bind "$debs"

log "cloning $commit"
git clone -q --no-local "$here" "$root/root/qformer"
git -C "$root/root/qformer" checkout -q "$commit"
log "root ready in $((SECONDS - t0)) s; running the README's commands"

# A clean environment: nothing of the host's shell leaks in.
in_root() {
  chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 TERM=dumb CI=true DEBIAN_FRONTEND=noninteractive \
    /bin/bash -c "cd /root/qformer && $1"
}
t1=$SECONDS
in_root ./scripts/demo.sh
log "demo.sh passed in $((SECONDS - t1)) s"
t1=$SECONDS
in_root ./scripts/test.sh
log "test.sh passed in $((SECONDS - t1)) s"
log "fresh Debian 12: README commands green ($((SECONDS - t0)) s for this run)"
