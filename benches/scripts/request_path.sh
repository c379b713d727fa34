#!/usr/bin/env bash
# The request path's cost: CPU per operation (utime + stime of each node process, from
# /proc/PID/stat, before and after each run), throughput and latency of a loopback cluster of
# 3 real `ringctl serve` processes (N=3, R=2, W=2), set beside redis-server with two replicas
# measured the same way in the same run.
# Usage (from the repository root): bash benches/scripts/request_path.sh [SECONDS] [CONCURRENCY] [VALUE_BYTES]
# Env: DURABILITY=sync|buffered (default sync); PRIMARY=0 skips the primary-mode run;
#      REDIS=0 skips Redis; ROUTE=node|token is passed to `ringctl bench --route` (unset: the
#      binary's default, every request through n1); NODE_LOG sets the nodes' RUST_LOG (default warn);
#      KEEP=DIR keeps the nodes' logs there; RINGCTL=path uses that binary instead of building;
#      PROFILE=DIR records `perf record -e cpu-clock` of n1 (the coordinator) and n2 (a replica)
#      during the quorum runs into DIR/n1-0.data, DIR/n2-0.data (SET), DIR/n1-1.data,
#      DIR/n2-1.data (GET) (needs perf; the profiled runs' CPU figures include its overhead).
# Installs nothing: Redis is measured only when redis-server and redis-benchmark are on PATH.
# Starts its processes on free loopback ports in a temporary directory and stops every one of
# them by pid at the end, on error and on Ctrl-C. Every run is bounded (SECONDS, or a request
# count for redis-benchmark).
set -euo pipefail
source "$(dirname "$0")/common.sh"
SECS=${1:-10}
CONC=${2:-50}
VALUE=${3:-100}
KEYS=10000
DURABILITY=${DURABILITY:-sync}
bench_init
tcp_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# measure LABEL OPS_FILE PID... -- CMD...: run CMD, then print one row of CPU per op. The op
# count is read from OPS_FILE (written by CMD's caller); rows go to $DIR/rows.
measure() {
  local label=$1 opsfile=$2; shift 2
  local pids=()
  while [ "$1" != "--" ]; do pids+=("$1"); shift; done; shift
  local before after u0 u1
  before=$(cpu_us "${pids[@]}" | tr '\n' ' ')
  u0=$(udp)
  "$@"
  u1=$(udp)
  after=$(cpu_us "${pids[@]}" | tr '\n' ' ')
  echo "$label|$(cat "$opsfile")|$before|$after|$u0|$u1|$(cat "$DIR/client_cpu")" >>"$DIR/rows"
}
# client CMD...: run the load generator, its CPU seconds (utime + stime) into $DIR/client_cpu.
client() {
  python3 -c '
import resource, subprocess, sys
subprocess.run(sys.argv[2:], check=True)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
open(sys.argv[1], "w").write(f"{r.ru_utime + r.ru_stime}\n")
' "$DIR/client_cpu" "$@"
}
# udp: the host's UDP datagrams sent and datagrams dropped for a full receive buffer (every
# process on the machine counts, so other loopback traffic during a run shows here too).
udp() { awk '/^Udp: [0-9]/ {print $5, $6}' /proc/net/snmp; }

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "ringkv: ${SECS}s runs, $CONC clients, $KEYS keys, $VALUE B values, durability $DURABILITY"

# --- ringkv -----------------------------------------------------------------------------
NODES=(n1 n2 n3)
declare -A ADDR PID
start_nodes "${NODES[@]}" -- --durability "$DURABILITY"
at() { $R --node "${ADDR[n1]}" --certs "$DIR/certs" "$@"; }
until_true 30 all_up "${ADDR[n1]}" 3
NODE_PIDS=("${PID[n1]}" "${PID[n2]}" "${PID[n3]}")
# bench LABEL PREFIX READ_RATIO: one closed-loop run through n1, with the nodes' CPU.
bench() {
  local label=$1 prefix=$2 ratio=$3
  run() {
    client "$R" --node "${ADDR[n1]}" --certs "$DIR/certs" -o json bench --duration "${SECS}s" --concurrency "$CONC" --keys $KEYS --value-size "$VALUE" \
      --read-ratio "$ratio" --prefix "$prefix" ${ROUTE:+--route "$ROUTE"} >"$DIR/bench.json"
    python3 -c "import json; d=json.load(open('$DIR/bench.json')); print(d['ops'])" >"$DIR/ops"
  }
  local perfs=()
  if [ -n "${PROFILE:-}" ] && [ "$prefix" = q: ]; then
    mkdir -p "$PROFILE"
    for n in n1 n2; do
      perf record -q -e cpu-clock -F 999 --call-graph dwarf,16384 -o "$PROFILE/$n-$ratio.data" -p "${PID[$n]}" \
        -- sleep "$SECS" >/dev/null 2>&1 &
      perfs+=($!); PIDS+=($!)
    done
  fi
  measure "$label" "$DIR/ops" "${NODE_PIDS[@]}" -- run
  for p in "${perfs[@]}"; do wait "$p" || true; done
  python3 - "$DIR/bench.json" "$label" >>"$DIR/lat" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
op = d['writes'] if d['writes']['ok'] + d['writes']['errors'] else d['reads']
ms = lambda us: '-' if us is None else f"{us / 1000:.2f}"
err = f" (first: {d['first_error']})" if d['errors'] else ""
print(f"{sys.argv[2]}|{d['throughput_ops_s']:.0f}|{ms(op['p50_us'])} / {ms(op['p99_us'])} / {ms(op['p999_us'])}|{d['errors']}{err}")
EOF
}
# Warm up: connections, memtables, the first writes of every key.
at bench --duration 2s --concurrency "$CONC" --keys $KEYS --read-ratio 0 >/dev/null 2>&1
bench "ringkv quorum SET" q: 0
bench "ringkv quorum GET" q: 1
if [ "${PRIMARY:-1}" != 0 ]; then
  at range set --prefix p: --mode primary --sync-replicas none >/dev/null
  has_rule() { $R --node "${ADDR[$1]}" --certs "$DIR/certs" range list | grep -q 'p:'; }
  for n in "${NODES[@]}"; do until_true 30 has_rule $n; done
  # Elect every shard's primary (errors saying "retry" are expected here).
  at bench --duration 4s --concurrency 8 --keys 1000 --read-ratio 0 --prefix p: >/dev/null 2>&1 || true
  sleep 2
  bench "ringkv primary (sync none) SET" p: 0
  bench "ringkv primary (sync none) GET" p: 1
fi
for n in "${NODES[@]}"; do
  echo "$n RSS after the runs: $(awk '/VmRSS/ {print $2, $3}' /proc/${PID[$n]}/status)"
done

# --- Redis ------------------------------------------------------------------------------
if [ "${REDIS:-1}" != 0 ] && command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null; then
  RP=(); RPID=()
  for i in 0 1 2; do
    RP+=($(tcp_port))
    repl=(); [ $i != 0 ] && repl=(--replicaof 127.0.0.1 "${RP[0]}")
    redis-server --port "${RP[$i]}" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
      --dir "$DIR" --dbfilename "r$i.rdb" "${repl[@]}" >"$DIR/redis$i.log" 2>&1 &
    PIDS+=($!); RPID+=($!)
  done
  linked() { for i in 1 2; do redis-cli -p "${RP[$i]}" info replication | grep -q 'master_link_status:up' || return 1; done; }
  until_true 30 linked
  # A request count that runs about SECS at Redis's usual ~100k/s here, bounded either way.
  N=$((SECS * 100000))
  for t in set get; do
    redis_run() {
      client redis-benchmark -p "${RP[0]}" -c "$CONC" -d "$VALUE" -r $KEYS -n $N -t $t --csv >"$DIR/redis.csv" 2>/dev/null
      echo $N >"$DIR/ops"
    }
    measure "redis ${t^^}" "$DIR/ops" "${RPID[@]}" -- redis_run
    python3 - "$DIR/redis.csv" "redis ${t^^}" >>"$DIR/lat" <<'EOF'
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
head, row = rows[0], rows[1]
v = dict(zip(head, row))
print(f"{sys.argv[2]}|{float(v['rps']):.0f}|{float(v['p50_latency_ms']):.2f} / {float(v['p99_latency_ms']):.2f} / -|0")
EOF
  done
else
  echo "redis-server or redis-benchmark not found (or REDIS=0): Redis not measured"
fi

# --- report -----------------------------------------------------------------------------
python3 - "$DIR/rows" "$DIR/lat" <<'EOF'
import sys
rows = [l.rstrip('\n').split('|') for l in open(sys.argv[1])]
lat = {l.split('|')[0]: l.rstrip('\n').split('|')[1:] for l in open(sys.argv[2])}
print()
print("| run | ops | throughput (ops/s) | CPU µs/op per server process | CPU µs/op summed | client CPU µs/op | p50 / p99 / p999 (ms) | UDP datagrams/op | receive-buffer drops | errors |")
print("|---|---|---|---|---|---|---|---|---|---|")
res = {}
for label, ops, before, after, u0, u1, client in rows:
    (o0, d0), (o1, d1) = [map(int, u.split()) for u in (u0, u1)]
    ops = int(ops)
    b = [float(x) for x in before.split()]
    a = [float(x) for x in after.split()]
    per = [(y - x) / max(ops, 1) for x, y in zip(b, a)]
    tput, pct, errs = lat[label]
    res[label] = (float(tput), sum(per))
    print(f"| {label} | {ops:,} | {float(tput):,.0f} | {' + '.join(f'{p:.0f}' for p in per)} | {sum(per):.0f} | {float(client) * 1e6 / max(ops, 1):.0f} | {pct} | {(o1 - o0) / max(ops, 1):.1f} | {d1 - d0} | {errs} |")
print()
for op in ("SET", "GET"):
    redis = res.get(f"redis {op}")
    if not redis:
        continue
    for label, (tput, cpu) in res.items():
        if label.startswith("ringkv") and label.endswith(op):
            print(f"{label}: {tput / redis[0]:.2f}x Redis's throughput, {cpu / redis[1]:.1f}x its CPU per op")
EOF
