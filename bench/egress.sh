#!/usr/bin/env bash
# Egress gateway benchmark: prints a table of throughput (median of 7 responses of 100 MB) and
# latency (median of 200 small GETs, a new connection each) through the gateway's TCP listener,
# as plain HTTP and as a CONNECT tunnel, against a direct connection to the same local server
# and against a bare splice relay (the floor of any relay on this host), the routes taking
# turns, all in one run on loopback; then HTTPS direct vs through a passed-through CONNECT
# tunnel vs through a tunnel the gateway terminates (credential injected).
# Usage: bench/egress.sh [--record] [--short]   (--record also saves the table under bench/runs/;
#   --short is accepted for bench/all.sh and changes nothing: the full run takes seconds)
set -euo pipefail
cd "$(dirname "$0")/.."
record=no
for a in "$@"; do
  case $a in --record) record=yes ;; --short) ;; *) echo "usage: bench/egress.sh [--record] [--short]" >&2; exit 2 ;; esac
done
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! out=$(cargo bench -q -p airlock-net --bench throughput 2>"$log"); then
  cat "$log" >&2
  echo "bench/egress.sh: the benchmark failed" >&2
  exit 1
fi
if ! tls=$(cargo bench -q -p airlock-net --bench tls 2>"$log"); then
  cat "$log" >&2
  echo "bench/egress.sh: the TLS benchmark failed" >&2
  exit 1
fi
out=$(printf '%s\n\n%s\n' "$(grep -v '^$' <<<"$out")" "$(grep -v '^$' <<<"$tls")")
echo "$out"
if [ $record = yes ]; then
  dir="bench/runs/$(date +%Y-%m-%d)-$(hostname -s)"
  mkdir -p "$dir"
  { echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD) $(nproc) cores"; echo "$out"; } > "$dir/egress.txt"
  echo "recorded in $dir/egress.txt" >&2
fi
