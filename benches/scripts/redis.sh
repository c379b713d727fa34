#!/usr/bin/env bash
# redis-benchmark against redis-server (a master with two replicas) and against the Redis
# front of a 3-node ringkv cluster (N=3, R=2, W=2, durability sync), in the same run, on
# loopback: requests per second, latency and server CPU per request (utime + stime of the
# three server processes from /proc/PID/stat, before and after each run) per test, and
# ringkv's ratios to redis-server.
# Usage (from the repository root): bash benches/scripts/redis.sh [REQUESTS] [CLIENTS]
#   KEYSPACE=N (default 100000): redis-benchmark -r N, random keys; KEYSPACE=0: its default
#   of one key for every request (a connection's pipelined writes of one key run in order).
#   RINGCTL=path/to/ringctl: that build instead of building this tree's.
# Needs redis-server and redis-benchmark (Debian's redis-server and redis-tools). Starts its
# own processes on free ports in a temporary directory and kills them all (by pid) at the end.
set -euo pipefail
REQS=${1:-20000}
CLIENTS=${2:-50}
KEYSPACE=${KEYSPACE:-100000}
if [ -z "${RINGCTL:-}" ]; then
  cargo build --release -q -p ringctl
fi
R=${RINGCTL:-$PWD/target/release/ringctl}
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
RPIDS=($!)
for p in "$RR1" "$RR2"; do
  redis-server --port "$p" --save '' --appendonly no --replicaof 127.0.0.1 "$RM" --dir "$DIR" \
    --logfile "$DIR/r$p.log" --daemonize no &
  PIDS+=($!); RPIDS+=($!); disown $!
done
until_true 20 sh -c "redis-cli -p $RM info replication | grep -q connected_slaves:2"

# ringkv: three nodes, each with its Redis front on its QUIC port number.
$R certs init --dir "$DIR/certs" >/dev/null
declare -A ADDR
KPIDS=()
for n in n1 n2 n3; do
  $R certs issue --dir "$DIR/certs" --name $n --ip 127.0.0.1 >/dev/null
  ADDR[$n]=127.0.0.1:$(port)
done
for n in n1 n2 n3; do
  seed=(); [ $n != n1 ] && seed=(--seed "${ADDR[n1]}")
  RUST_LOG=warn $R serve --name $n --listen "${ADDR[$n]}" --data "$DIR/$n" --certs "$DIR/certs" \
    --on-signal stop --redis "${ADDR[$n]}" --redis-plaintext "${seed[@]}" >>"$DIR/$n.log" 2>&1 &
  PIDS+=($!); KPIDS+=($!); disown $!
done
KP=${ADDR[n1]##*:}
until_true 30 sh -c "$R --node ${ADDR[n1]} --certs $DIR/certs -o json members | grep -o '\"alive\"' | wc -l | grep -qx 3"
until_true 20 sh -c "redis-cli -p $KP set warm x | grep -q OK"

TICK=$(getconf CLK_TCK)
# cpu_us PID...: utime + stime of the processes together, in microseconds.
cpu_us() { for p in "$@"; do awk -v t="$TICK" '{sub(/.*\) /, ""); print ($12 + $13) * 1000000 / t}' "/proc/$p/stat"; done | awk '{s += $1} END {printf "%d\n", s}'; }
RANDOM_KEYS=(); [ "$KEYSPACE" -gt 0 ] && RANDOM_KEYS=(-r "$KEYSPACE")
# bench PORT PIPELINE TEST PIDS...: "rps p50_ms cpu_us_per_request" of one redis-benchmark run.
bench() {
  local port=$1 pipe=$2 test=$3; shift 3
  local before after row
  before=$(cpu_us "$@")
  row=$(redis-benchmark -h 127.0.0.1 -p "$port" -c "$CLIENTS" -d 100 -t "$test" -n "$REQS" -P "$pipe" \
    "${RANDOM_KEYS[@]}" --csv 2>&1 | grep '^"[A-Z]')
  after=$(cpu_us "$@")
  python3 -c 'import csv, sys; r = next(csv.reader([sys.argv[1]])); print(r[1], r[4], (int(sys.argv[3]) - int(sys.argv[2])) / int(sys.argv[4]))' \
    "$row" "$before" "$after" "$REQS"
}
echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); $REQS requests, $CLIENTS clients, keyspace ${KEYSPACE} (0: one key)"
echo "| test | pipeline | redis-server ops/s (p50 ms) | CPU µs/op | ringkv ops/s (p50 ms) | CPU µs/op | ringkv / redis ops/s | ringkv / redis CPU per op |"
echo "|---|---|---|---|---|---|---|---|"
for P in 1 16; do
  for T in set get; do
    read -r rr rp rc < <(bench "$RM" "$P" "$T" "${RPIDS[@]}")
    read -r kr kp kc < <(bench "$KP" "$P" "$T" "${KPIDS[@]}")
    python3 -c 'import sys; T, P, rr, rp, rc, kr, kp, kc = sys.argv[1:3] + [float(x) for x in sys.argv[3:]]
print(f"| {T.upper()} | {P} | {rr:,.0f} ({rp:.2f}) | {rc:.1f} | {kr:,.0f} ({kp:.2f}) | {kc:.1f} | {kr / rr:.3f} | {kc / rc:.1f} |")' \
      "$T" "$P" "$rr" "$rp" "$rc" "$kr" "$kp" "$kc"
  done
done
# The same load spread over the three fronts by a cluster-aware client.
redis-benchmark -h 127.0.0.1 -p "$KP" -c "$CLIENTS" -d 100 -t set,get -n "$REQS" -P 16 "${RANDOM_KEYS[@]}" \
  --cluster --csv 2>&1 | grep '^"[A-Z]' >"$DIR/cluster.csv"
python3 - "$DIR/cluster.csv" <<'PY'
import csv, sys
for r in csv.reader(open(sys.argv[1])):
    print(f"| {r[0]} | 16, --cluster (3 fronts) | | | {float(r[1]):,.0f} ({float(r[4]):.2f}) | | | |")
PY
