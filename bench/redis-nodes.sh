#!/bin/bash
# Rookery with --engine redis, side by side with a node alone (issue #15), indicative:
# chat writes acked per second (W5's writer, `chat`), and W2 at fanout 100 with the
# subscribers on one node alone or split over two nodes sharing one Redis. Run from the
# repository root after `cargo build --release -p rookery -p rookery-bench`; needs
# redis-server and curl. Ports 16479 and 18081-18083 must be free.
# CLUSTER=1: the two nodes share a Redis Cluster of three masters instead (`--redis-cluster`;
# ports 16479-16481 and their cluster bus ports 26479-26481 must be free; needs redis-cli).
set -u
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
W=${W:-target/release}
P=16479
CLUSTER=${CLUSTER:-0}
RP=""
if [ "$CLUSTER" = 1 ]; then
  for port in $P $((P+1)) $((P+2)); do
    mkdir -p "$DIR/$port"
    redis-server --port $port --bind 127.0.0.1 --cluster-enabled yes --save "" --appendonly no --dir "$DIR/$port" --daemonize no >/dev/null 2>&1 &
    RP="$RP $!"
    for i in $(seq 1 100); do redis-cli -p $port ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
  done
  redis-cli --cluster create 127.0.0.1:$P 127.0.0.1:$((P+1)) 127.0.0.1:$((P+2)) --cluster-replicas 0 --cluster-yes >/dev/null
  for i in $(seq 1 100); do redis-cli -p $P cluster info | grep -q cluster_state:ok && break; sleep 0.1; done
  REDIS="--redis-cluster --redis-url redis://127.0.0.1:$P"
else
  redis-server --port $P --bind 127.0.0.1 --save "" --appendonly no --dir "$DIR" --daemonize no >/dev/null 2>&1 &
  RP=$!
  for i in $(seq 1 100); do redis-cli -p $P ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
  REDIS="--redis-url redis://127.0.0.1:$P"
fi
start() { # $1 port $2.. extra
  local port=$1; shift
  ROOKERY_LOG=warn $W/rookery --listen 127.0.0.1:$port --cores 1 --store memory --max-message-rate 0 "$@" > /dev/null 2>&1 &
  echo $!
}
A=$(start 18081 --engine redis $REDIS)
B=$(start 18082 --engine redis $REDIS)
C=$(start 18083)
for port in 18081 18082 18083; do
  for i in $(seq 1 100); do curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$port/readyz | grep -q 200 && break; sleep 0.1; done
done
echo "== W5-style chat writes (200 connections, 20 rooms, window 16), acked/s"
for port in 18083 18081; do
  echo "-- node :$port"
  $W/rookery-bench writer --addr 127.0.0.1:$port --kinds chat --rooms 20 --connections 200 --window 16 --rate 0 --warmup 1 --seconds 3 | tail -1
done
echo "== W2: 1 publisher, 100 subscribers in one room"
RATES=${RATES:-100,200,400,800,1600,3200,6400}
echo "-- one node (alone), all 100 subscribers on it"
$W/rookery-bench worker --system rookery --addr 127.0.0.1:18083 --prefix w2a --subscribers 100 --publishers 1 --rates $RATES --step-seconds 2 | tail -1
echo "-- two nodes (redis): publisher + 50 subscribers on A, 50 subscribers on B"
$W/rookery-bench worker --system rookery --addr 127.0.0.1:18082 --prefix w2r --subscribers 50 --publishers 0 --rates $RATES --step-seconds 2 > "$DIR/b.out" &
WB=$!
$W/rookery-bench worker --system rookery --addr 127.0.0.1:18081 --prefix w2r --subscribers 50 --publishers 1 --rates $RATES --step-seconds 2 | tail -1
wait $WB; tail -1 "$DIR/b.out"
kill $A $B $C $RP
wait
