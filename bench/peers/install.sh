#!/usr/bin/env bash
# Installs the benchmark's peers that do not come from crates.io: Node `ws` (npm), nginx
# with the nchan module (Debian), and the uWebSockets relay (built from source with g++).
# Idempotent.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -d node_modules/ws ]; then
  npm install --no-audit --no-fund --silent
fi
if [ ! -f /usr/lib/nginx/modules/ngx_nchan_module.so ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq nginx-light libnginx-mod-nchan >/dev/null 2>&1 \
    || apt-get install -y -qq nginx libnginx-mod-nchan >/dev/null
  # The package starts a system nginx on port 80; the benchmark runs its own.
  (service nginx stop || systemctl stop nginx || pkill -x nginx || true) >/dev/null 2>&1
fi
./uws/build.sh
echo "peers installed: node ws, nginx + nchan, uWebSockets (bench/peers/uws/peer_uws)"
