# Helpers the benchmark scripts share; sourced, not run.

# port: a loopback UDP port free right now.
port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# until_true SECONDS CMD...: retry CMD every 0.2 s until it succeeds; fail after SECONDS.
until_true() {
  local end=$(($(date +%s) + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt $end ] || { echo "gave up waiting for: $*" >&2; return 1; }
    sleep 0.2
  done
}
