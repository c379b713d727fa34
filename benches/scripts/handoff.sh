#!/usr/bin/env bash
# Hint delivery rate, its effect on foreground latency, and the ownership-transfer rate when
# a node joins, on a loopback cluster of real `ringctl serve` processes.
# Usage (from the repository root): bash benches/scripts/handoff.sh [WRITE_SECONDS] [VALUE_BYTES]
# Starts its own nodes on free ports in a temporary directory and kills them all at the end.
set -euo pipefail
source "$(dirname "$0")/common.sh"
SECS=${1:-10}
VALUE=${2:-1000}
cargo build --release -q -p ringctl
R=$PWD/target/release/ringctl
DIR=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$DIR"; }
trap cleanup EXIT
$R certs init --dir "$DIR/certs" >/dev/null
declare -A ADDR PID
for n in n1 n2 n3 n4 n5; do
  $R certs issue --dir "$DIR/certs" --name $n --ip 127.0.0.1 >/dev/null
  ADDR[$n]=127.0.0.1:$(port)
done
serve() {
  local seed=(); [ "$1" != n1 ] && seed=(--seed "${ADDR[n1]}")
  RUST_LOG=warn $R serve --name "$1" --listen "${ADDR[$1]}" --data "$DIR/$1" --certs "$DIR/certs" \
    --on-signal stop "${seed[@]}" >>"$DIR/$1.log" 2>&1 &
  PIDS+=($!); PID[$1]=$!
}
ctl() { $R --node "${ADDR[n1]}" --certs "$DIR/certs" "$@"; }
# Sum a Python expression over the status (as `d`) of the given nodes.
status_sum() {
  local expr=$1; shift; local total=0
  for n in "$@"; do
    v=$($R --node "${ADDR[$n]}" --certs "$DIR/certs" -o json status |
      python3 -c "import json,sys; d=json.load(sys.stdin); print($expr)")
    total=$((total + v))
  done
  echo $total
}
hints_for_n4() { status_sum "sum(h['count'] for h in d['hints'] if h['owner']=='n4')" n1 n2 n3; }
now() { date +%s.%N; }
load() { ctl bench --duration "$1" --value-size "$VALUE" --read-ratio "$2" --concurrency 16 --keys 100000 2>/dev/null; }

for n in n1 n2 n3 n4; do serve $n; done
sleep 4

echo "== hint delivery: writes for ${SECS}s (W=2, ${VALUE} B values) while n4 is down"
kill -9 "${PID[n4]}"; sleep 4
load "${SECS}s" 0 | grep -E "^ops"
HINTS=$(hints_for_n4)
serve n4
T0=$(now)
while [ "$(hints_for_n4)" != 0 ]; do sleep 0.1; done
T1=$(now)
python3 -c "print(f'{$HINTS} hints delivered in {$T1-$T0:.2f} s: {$HINTS/($T1-$T0):.0f} hints/s')"

echo "== foreground latency (50% reads, 5 s), without and during hint delivery"
echo "-- no delivery:"; load 5s 0.5 | grep -E "throughput|^reads|^writes"
kill -9 "${PID[n4]}"; sleep 4
load "${SECS}s" 0 >/dev/null
serve n4; sleep 0.3
echo "-- during delivery of $(hints_for_n4) hints:"; load 5s 0.5 | grep -E "throughput|^reads|^writes"
while [ "$(hints_for_n4)" != 0 ]; do sleep 0.2; done

echo "== ownership transfer: n5 joins a cluster holding the data above"
B0=$(status_sum "d['keys_handed_off']" n1 n2 n3 n4)
serve n5
T0=$(now); LAST=$B0; STABLE=$T0
while true; do
  sleep 0.2
  B=$(status_sum "d['keys_handed_off']" n1 n2 n3 n4)
  if [ "$B" != "$LAST" ]; then LAST=$B; STABLE=$(now); fi
  python3 -c "import sys; sys.exit(0 if $(now) - $STABLE > 3 and $LAST > $B0 else 1)" && break
  python3 -c "import sys; sys.exit(0 if $(now) - $T0 > 120 else 1)" && break
done
python3 -c "k=$LAST-$B0; t=$STABLE-$T0; print(f'{k} keys ({k*$VALUE/1e6:.1f} MB of values) handed to n5 in {t:.2f} s: {k*$VALUE/1e6/t:.1f} MB/s')"
