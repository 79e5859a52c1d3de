#!/usr/bin/env bash
# Builds the uWebSockets peer (`bench/peers/uws/peer_uws`) from relay.cpp and pinned
# commits of uNetworking/uWebSockets and uNetworking/uSockets (Apache-2.0; benchmark peer
# only, never linked into Rookery). Sources, first found:
#   1. ROOKERY_UWS_SRC / ROOKERY_USOCKETS_SRC: a directory (the repository's root, with
#      src/) or a .tar.gz snapshot of it;
#   2. the snapshots in ../shared/peers/ beside the checkout (named after the commits);
#   3. a clone of the pinned commits from GitHub.
# Rebuilds only when relay.cpp or this script is newer than the binary.
set -euo pipefail
cd "$(dirname "$0")"
UWS_COMMIT=66dcff3dd48f0c19dd1703426365d062039321d0
USOCKETS_COMMIT=86097c490263ab662d62e8e7b541390bdec7d149
OUT=peer_uws
if [ -x "$OUT" ] && [ "$OUT" -nt relay.cpp ] && [ "$OUT" -nt build.sh ]; then
  echo "uws peer: up to date ($PWD/$OUT)"
  exit 0
fi
need() { command -v "$1" >/dev/null 2>&1; }
if ! need g++ || [ ! -f /usr/include/zlib.h ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq g++ zlib1g-dev >/dev/null
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
SNAPSHOTS="$(cd ../../.. && pwd)/../shared/peers"

# fetch NAME REPO COMMIT OVERRIDE: puts the sources in $WORK/NAME (with src/ inside).
fetch() {
  local name=$1 repo=$2 commit=$3 override=$4
  local dest="$WORK/$name"
  if [ -n "$override" ]; then
    if [ -d "$override" ]; then
      cp -r "$override" "$dest"
    else
      mkdir -p "$WORK/x-$name" && tar xzf "$override" -C "$WORK/x-$name"
      mv "$WORK/x-$name"/* "$dest"
    fi
    echo "uws peer: $name from $override"
  elif [ -f "$SNAPSHOTS/$name-$commit.tar.gz" ]; then
    mkdir -p "$WORK/x-$name" && tar xzf "$SNAPSHOTS/$name-$commit.tar.gz" -C "$WORK/x-$name"
    mv "$WORK/x-$name"/* "$dest"
    echo "uws peer: $name from the snapshot of $commit"
  else
    git clone -q "https://github.com/uNetworking/$repo.git" "$dest"
    git -C "$dest" checkout -q "$commit"
    echo "uws peer: $name cloned at $commit"
  fi
  [ -d "$dest/src" ] || { echo "uws peer: no src/ in $name's sources" >&2; exit 1; }
}
fetch uWebSockets uWebSockets "$UWS_COMMIT" "${ROOKERY_UWS_SRC:-}"
fetch uSockets uSockets "$USOCKETS_COMMIT" "${ROOKERY_USOCKETS_SRC:-}"

# As uWS's own Makefile builds it, without TLS and without compression (the bench runs
# both off everywhere).
(
  cd "$WORK"
  gcc -O3 -DLIBUS_NO_SSL -I uSockets/src -c uSockets/src/*.c \
    uSockets/src/eventing/epoll_kqueue.c uSockets/src/crypto/*.c
  g++ -std=c++20 -O3 -DLIBUS_NO_SSL -DUWS_NO_ZLIB -I uWebSockets/src -I uSockets/src \
    "$OLDPWD/relay.cpp" ./*.o -lz -o peer_uws
)
mv "$WORK/peer_uws" "$OUT"
echo "uws peer: built $PWD/$OUT"
