#!/usr/bin/env bash
# Installs every build and test dependency of qformer on Debian 12 and builds
# the FAISS C API library (Debian ships libfaiss.a and the c_api headers but
# not libfaiss_c) from Debian's own faiss source package.
# Idempotent: re-running skips what is already there.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

PKGS=(build-essential cmake pkg-config git ca-certificates
      libopenblas-dev liblapack-dev libfaiss-dev libsqlite3-dev sqlite3
      libpng-dev libjpeg62-turbo-dev libcunit1-dev
      openmpi-bin libopenmpi-dev libjansson-dev libutf8proc-dev
      libcurl4-openssl-dev libssl-dev python3 python3-numpy
      clang libclang-rt-dev chromium groff-base libdnnl-dev
      libwebp-dev libgif-dev libtiff-dev libheif-dev
      libsentencepiece-dev libmicrohttpd-dev
      python3-pil python3-sentencepiece)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# --- FAISS C API -----------------------------------------------------------
prefix="${QF_FAISS_C_PREFIX:-$here/third_party/faiss_c}"
# NDEBUG: the C API otherwise prints every caught FAISS exception to stderr;
# qformer reports them itself through faiss_get_last_error.
cxxflags="-std=c++17 -O2 -fPIC -fopenmp -DNDEBUG"
# what the library holds: bump when the set of compiled sources changes
stamp="$cxxflags; c_api impl utils"
if [ -f "$prefix/lib/libfaiss_c.a" ] && [ "$(cat "$prefix/lib/build-flags" 2>/dev/null)" = "$stamp" ]; then
  echo "setup: FAISS C API already built in $prefix"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src_list=/etc/apt/sources.list.d/debian.sources
mkdir -p "$work/apt/lists/partial"
if [ -f "$src_list" ]; then
  sed 's/^Types:.*/Types: deb-src/' "$src_list" > "$work/apt/debian-src.sources"
else
  echo "Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" > "$work/apt/debian-src.sources"
fi
aptopt=(-o Dir::Etc::sourcelist=/dev/null -o Dir::Etc::sourceparts="$work/apt"
        -o Dir::State::Lists="$work/apt/lists")
apt-get "${aptopt[@]}" update -qq
(cd "$work" && apt-get "${aptopt[@]}" source --download-only faiss >/dev/null)
tarball=$(ls "$work"/faiss_*.orig.tar.* | head -n1)
mkdir -p "$work/src"
tar -xf "$tarball" -C "$work/src" --strip-components=1
mkdir -p "$prefix/lib" "$work/obj"
echo "setup: compiling FAISS C API"
for f in "$work"/src/c_api/*.cpp "$work"/src/c_api/impl/*.cpp "$work"/src/c_api/utils/*.cpp; do
  [ -f "$f" ] || continue
  case "$f" in *gpu*) continue;; esac
  # shellcheck disable=SC2086
  g++ $cxxflags -I"$work/src" -c "$f" -o "$work/obj/$(basename "${f%.cpp}").o" &
  while [ "$(jobs -r | wc -l)" -ge "$(nproc)" ]; do wait -n; done
done
wait
rm -f "$prefix/lib/libfaiss_c.a"
ar rcs "$prefix/lib/libfaiss_c.a" "$work"/obj/*.o
echo "$stamp" > "$prefix/lib/build-flags"
echo "setup: FAISS C API -> $prefix/lib/libfaiss_c.a"
