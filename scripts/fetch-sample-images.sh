#!/usr/bin/env bash
# fetch-sample-images.sh DIR - the real photographs of the demo: the sample
# images Debian's python3-skimage package ships (astronaut, chelsea the cat,
# coffee, rocket, motorcycles, horse, Hubble deep field, ...). The .deb is
# fetched with `apt-get download` into a temporary folder and unpacked with
# `dpkg-deb -x`; nothing is installed. Idempotent: exits at once when DIR
# already holds every image. QF_SKIMAGE_DEB=FILE.deb uses that package instead
# of downloading one (offline machines).
set -euo pipefail

# Colour photographs, then the grey photographs (no test patterns, no tiny files).
IMAGES=(
  astronaut.png chelsea.png coffee.png rocket.jpg motorcycle_left.png motorcycle_right.png
  horse.png hubble_deep_field.jpg retina.jpg ihc.png
  camera.png coins.png moon.png
)

if [ $# -ne 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  echo "usage: $0 DIR   (copies ${#IMAGES[@]} sample photographs from Debian's python3-skimage into DIR)" >&2
  [ $# -eq 1 ] && exit 0 || exit 2
fi
dest=$1

missing=0
for f in "${IMAGES[@]}"; do [ -s "$dest/$f" ] || missing=$((missing + 1)); done
if [ "$missing" -eq 0 ]; then
  echo "fetch-sample-images: $dest already holds the ${#IMAGES[@]} images" >&2
  exit 0
fi

for tool in dpkg-deb find; do
  command -v "$tool" >/dev/null || { echo "fetch-sample-images: $tool not found (a Debian/Ubuntu system is needed)" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/qf-skimage.XXXXXX")
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"     # lets apt's unprivileged _apt user write the .deb

if [ -n "${QF_SKIMAGE_DEB:-}" ]; then
  deb=$QF_SKIMAGE_DEB
  [ -f "$deb" ] || { echo "fetch-sample-images: QF_SKIMAGE_DEB=$deb: no such file" >&2; exit 1; }
else
  command -v apt-get >/dev/null || { echo "fetch-sample-images: apt-get not found; set QF_SKIMAGE_DEB to a python3-skimage .deb" >&2; exit 1; }
  echo "fetch-sample-images: downloading python3-skimage (about 20 MB) with apt-get download" >&2
  if ! (cd "$work" && apt-get download python3-skimage) >"$work/apt.log" 2>&1; then
    # Fresh machines have no package lists yet: refresh them once if we may.
    if [ "$(id -u)" -eq 0 ]; then
      echo "fetch-sample-images: refreshing the package lists (apt-get update)" >&2
      apt-get update >>"$work/apt.log" 2>&1 || true
      (cd "$work" && apt-get download python3-skimage) >>"$work/apt.log" 2>&1 || {
        cat "$work/apt.log" >&2
        echo "fetch-sample-images: apt-get download python3-skimage failed (no network?)" >&2
        exit 1
      }
    else
      cat "$work/apt.log" >&2
      echo "fetch-sample-images: apt-get download python3-skimage failed: run 'sudo apt-get update' and retry" >&2
      exit 1
    fi
  fi
  deb=$(find "$work" -maxdepth 1 -name 'python3-skimage_*.deb' | head -n 1)
  [ -n "$deb" ] || { echo "fetch-sample-images: apt-get download left no .deb" >&2; exit 1; }
fi

dpkg-deb -x "$deb" "$work/x"
data=$(find "$work/x" -type d -path '*/skimage/data' | head -n 1)
[ -n "$data" ] || { echo "fetch-sample-images: $deb has no skimage/data folder" >&2; exit 1; }

mkdir -p "$dest"
copied=0
for f in "${IMAGES[@]}"; do
  if [ -s "$data/$f" ]; then
    # copy under a temporary name, then rename: an interrupted run leaves no half image
    cp "$data/$f" "$dest/.$f.tmp" && mv -f "$dest/.$f.tmp" "$dest/$f"
    copied=$((copied + 1))
  else
    echo "fetch-sample-images: warning: $f is not in this python3-skimage" >&2
  fi
done
[ "$copied" -gt 0 ] || { echo "fetch-sample-images: no sample image found in $deb" >&2; exit 1; }
echo "fetch-sample-images: $copied images in $dest" >&2
