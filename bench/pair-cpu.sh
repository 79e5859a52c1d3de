#!/usr/bin/env bash
# What a fixed load costs the whole two-node system (or a node alone) in CPU time, for
# A/B comparisons of `rookery` binaries on Redis where saturated throughput is too noisy
# to tell them apart: Redis and two `--cores 1 --engine redis` nodes on core 0, one
# `rookery-bench worker` on core 1 (one publisher on node A, N subscribers alternating
# between A and B), RATES messages/s per 2 s step; then each process's CPU ticks
# (utime + stime from /proc, start-up included: the same for both sides) and, per step,
# deliveries/s and p50/p99 in ms.
#
#   bench/pair-cpu.sh BIN N RATES [pair|single]
#   bench/pair-cpu.sh target/release/rookery 100 20000,20000,20000,20000
#   ROOMS=1000 PUBS=100 bench/pair-cpu.sh target/release/rookery 10000 200,200,200   # W3's shape
#
# ROOMS (default 1) rooms share the N subscribers; PUBS (default 1) publishers, each in a
# room of its own, each sending RATES messages/s.
# `single`: the node alone (no Redis, no node B), for the pair's overhead. Interleave the
# binaries (A B A B …) and compare totals; used for the fixed-rate figures in
# bench/RESULTS.md ("A payload kept as text"). Needs redis-server, curl, python3, and
# rookery-bench in target/release (BENCH= to override).
set -euo pipefail
bin=$1 n=$2 rates=$3 mode=${4:-pair}
root=$(cd "$(dirname "$0")/.." && pwd)
bench=${BENCH:-$root/target/release/rookery-bench}
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT
node_a=$(free_port)
sub=()
if [ "$mode" = pair ]; then
  redis=$(free_port) node_b=$(free_port)
  taskset -c 0 redis-server --port "$redis" --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
  pids+=($!)
  sleep 0.3
  for port in "$node_a" "$node_b"; do
    taskset -c 0 "$bin" --listen "127.0.0.1:$port" --cores 1 --max-message-rate 0 --store memory \
      --engine redis --redis-url "redis://127.0.0.1:$redis" >/dev/null 2>&1 &
    pids+=($!)
  done
  sub=(--sub-addrs "127.0.0.1:$node_b")
  nodes=("$node_a" "$node_b")
else
  taskset -c 0 "$bin" --listen "127.0.0.1:$node_a" --cores 1 --max-message-rate 0 --store memory >/dev/null 2>&1 &
  pids+=($!)
  nodes=("$node_a")
fi
for port in "${nodes[@]}"; do
  for _ in $(seq 200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz")" = 200 ] && break
    sleep 0.1
  done
done
result=$(taskset -c 1 "$bench" worker --system rookery --addr "127.0.0.1:$node_a" "${sub[@]}" \
  --rooms "${ROOMS:-1}" --subscribers "$n" --publishers "${PUBS:-1}" --rates "$rates" --step-seconds 2 | tail -1)
ticks=()
for pid in "${pids[@]}"; do ticks+=("$(awk '{print $14 + $15}' "/proc/$pid/stat")"); done
echo "CPU ticks ($([ "$mode" = pair ] && echo "Redis, node A, node B" || echo "node")): ${ticks[*]}; total $(( $(IFS=+; echo "${ticks[*]}") ))"
python3 -c '
import json, sys
r = json.loads(sys.argv[1]); s = r["step_seconds"]
for step in r["steps"]:
    print("%6d msg/s: %.2f M deliveries/s, p50 %.2f ms, p99 %.2f ms" % (step["rate"], step["delivered"] / s / 1e6, step["p50_us"] / 1e3, step["p99_us"] / 1e3))
' "$result"
