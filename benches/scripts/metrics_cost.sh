#!/usr/bin/env bash
# The cost of `serve --metrics` on the request path: CPU per operation (utime + stime of the
# three node processes, from /proc/PID/stat, before and after each run) of two loopback
# clusters of 3 `ringctl serve` processes (N=3, R=2, W=2, durability sync) started side by
# side, one without and one with `--metrics`, the latter scraped every second (`GET /metrics`
# on every node: fifteen times Prometheus's default rate, so scrapes weigh more than they
# would). Runs alternate between the two clusters (which goes first alternates too), ROUNDS
# times each, so both see the same machine; the report gives each run, the median per
# cluster, and the median of each round's ratio.
# Usage (from the repository root): bash benches/scripts/metrics_cost.sh [SECONDS] [ROUNDS] [CONCURRENCY]
# Env: RINGCTL=path uses that binary instead of building one (release).
#      PROFILE=1 also records `perf record -e cpu-clock` of on-n1 (the coordinator) and on-n2 (a
#      replica) during the first round's runs with metrics, and prints the share of each one's
#      CPU samples spent in metrics code: a figure other load on the machine does not skew.
# Starts its processes on free loopback ports in a temporary directory and stops every one of
# them by pid at the end, on error and on Ctrl-C. Every run is bounded (SECONDS).
set -euo pipefail
source "$(dirname "$0")/common.sh"
SECS=${1:-10}
ROUNDS=${2:-3}
CONC=${3:-50}
KEYS=10000
bench_init
tcp_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "${SECS}s runs, $ROUNDS rounds, $CONC clients, $KEYS keys, 100 B values"

declare -A ADDR PID
METRICS_PORTS=()
start_nodes off-n1 off-n2 off-n3 --
# The `on` cluster's nodes each serve metrics on their own port; the first is the seed.
for n in n1 n2 n3; do
  mp=$(tcp_port); METRICS_PORTS+=("$mp")
  extra=(); [ $n != n1 ] && extra=(--seed "${ADDR[on-n1]}")
  start_nodes "on-$n" -- --metrics "127.0.0.1:$mp" "${extra[@]}"
done
at() { local c=$1; shift; $R --node "${ADDR[$c-n1]}" --certs "$DIR/certs" "$@"; }
until_true 60 all_up "${ADDR[off-n1]}" 3
until_true 60 all_up "${ADDR[on-n1]}" 3
# The scraper: every node of the `on` cluster, every second.
python3 - "${METRICS_PORTS[@]}" <<'EOF' &
import sys, time, urllib.request
while True:
    for p in sys.argv[1:]:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{p}/metrics", timeout=5).read()
        except Exception:
            pass
    time.sleep(1)
EOF
PIDS+=($!)
for c in off on; do at $c bench --duration 2s --concurrency "$CONC" --keys $KEYS --read-ratio 0 >/dev/null 2>&1; done

# run C RATIO: one bench through C-n1; prints "ops cpu_us".
run() {
  local c=$1 ratio=$2 pids=("${PID[$1-n1]}" "${PID[$1-n2]}" "${PID[$1-n3]}")
  local before after
  before=$(cpu_sum "${pids[@]}")
  at "$c" -o json bench --duration "${SECS}s" --concurrency "$CONC" --keys $KEYS --value-size 100 \
    --read-ratio "$ratio" >"$DIR/bench.json"
  after=$(cpu_sum "${pids[@]}")
  python3 -c "import json; d=json.load(open('$DIR/bench.json')); print(d['ops'], $after - $before, d['errors'])"
}
for round in $(seq "$ROUNDS"); do
  for op in SET GET; do
    ratio=0; [ $op = GET ] && ratio=1
    # Odd rounds run the cluster without metrics first, even rounds the other.
    order=(off on); [ $((round % 2)) = 0 ] && order=(on off)
    for c in "${order[@]}"; do
      perfs=()
      if [ -n "${PROFILE:-}" ] && [ "$c" = on ] && [ "$round" = 1 ]; then
        for n in n1 n2; do
          perf record -q -e cpu-clock -F 999 --call-graph dwarf,16384 -o "$DIR/$n-$op.data" -p "${PID[on-$n]}" \
            -- sleep "$SECS" >/dev/null 2>&1 &
          perfs+=($!); PIDS+=($!)
        done
      fi
      echo "$op $c $(run $c $ratio)" >>"$DIR/rows"
      for p in "${perfs[@]}"; do wait "$p" || true; done
    done
  done
done

python3 - "$DIR/rows" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
print()
print("| op | --metrics | CPU µs/op summed over 3 nodes, each run | median | ops, each run | errors |")
print("|---|---|---|---|---|---|")
med = {}
for op in ("SET", "GET"):
    for c in ("off", "on"):
        runs = [(int(o), float(u), int(e)) for (p, cc, o, u, e) in rows if p == op and cc == c]
        per = [u / max(o, 1) for o, u, _ in runs]
        med[(op, c)] = statistics.median(per)
        print(f"| {op} | {c} | {' / '.join(f'{x:.0f}' for x in per)} | {med[(op, c)]:.0f} | "
              f"{' / '.join(str(o) for o, _, _ in runs)} | {sum(e for _, _, e in runs)} |")
print()
# Each round ran both back to back: their ratio shares the machine's state.
for op in ("SET", "GET"):
    off = [float(u) / max(int(o), 1) for (p, c, o, u, e) in rows if p == op and c == "off"]
    on = [float(u) / max(int(o), 1) for (p, c, o, u, e) in rows if p == op and c == "on"]
    paired = sorted(b / a for a, b in zip(off, on))
    print(f"{op}: with --metrics / without, per round: {' '.join(f'{r:.2f}' for r in paired)}; "
          f"median {statistics.median(paired):.3f} ({100 * (statistics.median(paired) - 1):+.1f}% CPU per op)")
EOF
if [ -n "${PROFILE:-}" ]; then
  echo
  echo "Share of the node's CPU samples (inclusive) in metrics code, first round with --metrics:"
  echo "recording = ShellMetrics (requests, calls) and the metrics crates' handles; scrape = the HTTP"
  echo "handler, rendering, and the core's answers to its status questions. Nested frames of both may be"
  echo "counted twice, so the figures are upper bounds."
  for f in "$DIR"/n*-*.data; do
    perf report -i "$f" --children --sort symbol --stdio -g none 2>/dev/null | python3 -c '
import re, sys
name = sys.argv[1]
rec = scrape = 0.0
for line in sys.stdin:
    m = re.match(r"\s+([0-9.]+)%\s+[0-9.]+%\s+\[.\]\s+(.*\S)", line)
    if not m:
        continue
    pct, sym = float(m.group(1)), re.split(r"\s{2,}", m.group(2))[0]
    # Outermost frames only, so nested ones are not counted twice.
    if re.match(r"ringkv::metrics::shell::ShellMetrics::(answered|call_done|started|member_event)", sym) \
            or re.match(r"<metrics_util::registry::recency::Generational<T> as metrics::handles::(Counter|Histogram)Fn>", sym):
        rec += pct
    elif re.match(r"ringkv::metrics::http::serve::\{\{closure\}\}::\{\{closure\}\}$", sym) \
            or re.match(r"ringkv::core::antientropy::AntiEntropy::status|ringkv::core::hints::Hints::range_status", sym):
        scrape += pct
print(f"  {name}: recording {rec:.2f} %, scrape {scrape:.2f} %, together {rec + scrape:.2f} %")
' "$(basename "$f" .data)"
  done
fi
