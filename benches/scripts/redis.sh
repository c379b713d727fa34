#!/usr/bin/env bash
# redis-benchmark against redis-server (a master with two replicas) and against the Redis
# front of a 3-node ringkv cluster (N=3, R=2, W=2, durability sync), in the same run, on
# loopback: requests per second and latency per test, and ringkv's ratio to redis-server.
# Usage (from the repository root): bash benches/scripts/redis.sh [REQUESTS] [CLIENTS]
# Needs redis-server and redis-benchmark (Debian's redis-server and redis-tools). Starts its
# own processes on free ports in a temporary directory and kills them all (by pid) at the end.
set -euo pipefail
REQS=${1:-20000}
CLIENTS=${2:-50}
cargo build --release -q -p ringctl
R=$PWD/target/release/ringctl
DIR=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT
source "$(dirname "$0")/common.sh"

# redis-server: a master and two replicas, RDB and AOF off (its defaults but for `save`).
RM=$(port); RR1=$(port); RR2=$(port)
redis-server --port "$RM" --save '' --appendonly no --dir "$DIR" --logfile "$DIR/rm.log" --daemonize no &
PIDS+=($!); disown $!  # killed on purpose at the end: no job-control notice
for p in "$RR1" "$RR2"; do
  redis-server --port "$p" --save '' --appendonly no --replicaof 127.0.0.1 "$RM" --dir "$DIR" \
    --logfile "$DIR/r$p.log" --daemonize no &
  PIDS+=($!); disown $!
done
until_true 20 sh -c "redis-cli -p $RM info replication | grep -q connected_slaves:2"

# ringkv: three nodes, each with its Redis front on its QUIC port number.
$R certs init --dir "$DIR/certs" >/dev/null
declare -A ADDR
for n in n1 n2 n3; do
  $R certs issue --dir "$DIR/certs" --name $n --ip 127.0.0.1 >/dev/null
  ADDR[$n]=127.0.0.1:$(port)
done
for n in n1 n2 n3; do
  seed=(); [ $n != n1 ] && seed=(--seed "${ADDR[n1]}")
  RUST_LOG=warn $R serve --name $n --listen "${ADDR[$n]}" --data "$DIR/$n" --certs "$DIR/certs" \
    --on-signal stop --redis "${ADDR[$n]}" --redis-plaintext "${seed[@]}" >>"$DIR/$n.log" 2>&1 &
  PIDS+=($!); disown $!
done
KP=${ADDR[n1]##*:}
until_true 30 sh -c "$R --node ${ADDR[n1]} --certs $DIR/certs -o json members | grep -o '\"alive\"' | wc -l | grep -qx 3"
until_true 20 sh -c "redis-cli -p $KP set warm x | grep -q OK"

# bench PORT PIPELINE [--cluster]: CSV rows "test",rps,avg,min,p50,p95,p99,max.
bench() { redis-benchmark -h 127.0.0.1 -p "$1" -c "$CLIENTS" -d 100 -t set,get -n "$REQS" -P "$2" ${3:-} --csv 2>&1 | grep '^"[A-Z]'; }
echo "| test | pipeline | redis-server rps (p50 ms) | ringkv rps (p50 ms) | ringkv / redis |"
echo "|---|---|---|---|---|"
for P in 1 16; do
  bench "$RM" $P >"$DIR/redis.csv"
  bench "$KP" $P >"$DIR/ringkv.csv"
  python3 - "$DIR/redis.csv" "$DIR/ringkv.csv" "$P" <<'PY'
import csv, sys
read = lambda f: {r[0]: (float(r[1]), float(r[4])) for r in csv.reader(open(f))}
redis, ringkv = read(sys.argv[1]), read(sys.argv[2])
for test in ("SET", "GET"):
    (r, rp), (k, kp) = redis[test], ringkv[test]
    print(f"| {test} | {sys.argv[3]} | {r:,.0f} ({rp:.2f}) | {k:,.0f} ({kp:.2f}) | {k / r:.3f} |")
PY
done
# The same load spread over the three fronts by a cluster-aware client.
bench "$KP" 16 --cluster >"$DIR/cluster.csv"
python3 - "$DIR/cluster.csv" <<'PY'
import csv, sys
for r in csv.reader(open(sys.argv[1])):
    print(f"| {r[0]} | 16, --cluster (3 fronts) | | {float(r[1]):,.0f} ({float(r[4]):.2f}) | |")
PY
