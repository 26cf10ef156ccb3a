#!/usr/bin/env bash
# Guest report flood: a workload makes N refused syscalls as fast as it can (each one a report
# from the guest agent) and creates a file after every N/20 of them (each one a host record).
# Two runs in this invocation: the default budget for guest reports (audit.guest_rate 2000/s,
# bursts of 10,000) and, as the baseline, a budget no flood reaches. Each row: run time, guest
# reports recorded, reports counted over the budget (audit.dropped, reason guest_limit) or
# dropped inside the guest, host records present of those expected, and `audit verify`.
# Usage: bench/audit-flood.sh [--record] [--short]   (--short: 2,000 reports, to check it runs)
set -euo pipefail
cd "$(dirname "$0")/.."
record=no n=100000
for a in "$@"; do
  case $a in --record) record=yes ;; --short) n=2000 ;; *) echo "usage: $0 [--record] [--short]" >&2; exit 2 ;; esac
done
cargo build -q --release -p airlock
AIRLOCK=${CARGO_TARGET_DIR:-$PWD/target}/release/airlock
work=$(mktemp -d /tmp/airlock-flood.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/ws"
cc -static -O1 -o "$work/ws/escape" crates/airlock/tests/probe/escape.c

run() { # name guest_rate
  local name=$1 rate=$2 dir="$work/$1"
  mkdir -p "$dir/audit" "$work/ws/marks-$name"
  printf '[[filesystem.mounts]]\nworkspace = true\nguest = "/workspace"\nmode = "rw"\n[audit]\nguest_rate = %s\n' "$rate" > "$dir/policy.toml"
  local t0 t1
  t0=$(date +%s.%N)
  AIRLOCK_AUDIT_DIR="$dir/audit" "$AIRLOCK" run --policy "$dir/policy.toml" --workspace "$work/ws" -- \
    /workspace/escape flood "$n" "/workspace/marks-$name" > "$dir/out" 2> "$dir/err" || { cat "$dir/err" >&2; exit 1; }
  t1=$(date +%s.%N)
  local log
  log=$(ls "$dir"/audit/*.jsonl)
  local verify=ok
  "$AIRLOCK" audit verify "$log" > /dev/null 2>&1 || verify=FAILED
  python3 - "$log" "$name" "$n" "$t0" "$t1" "$verify" <<'PY'
import json, sys
log, name, n, t0, t1, verify = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
recorded = limited = in_guest = 0
marks = set()
for line in open(log):
    r = json.loads(line)
    if r["kind"] == "policy.deny" and r.get("rule") == "process.seccomp":
        recorded += 1
    elif r["kind"] == "audit.dropped" and r.get("reason") == "guest_limit":
        limited += r.get("count", 0)
    elif r["kind"] == "audit.dropped" and r["source"] == "guest":
        in_guest += r.get("count", 0)
    elif r["kind"] == "fs.create" and r.get("decision") == "allow" and "/mark-" in r["fs"]["path"]:
        marks.add(r["fs"]["path"])
print(f"{name:<10} {t1 - t0:>8.1f} {n:>8} {recorded:>9} {limited:>10} {in_guest:>9} {len(marks):>5}/20 {recorded + limited + in_guest >= n!s:>9} {verify:>7}")
PY
}

header=$(printf '%-10s %8s %8s %9s %10s %9s %8s %9s %7s' budget seconds reports recorded over_limit in_guest host accounted verify)
rows=$(run default 2000; run unlimited 1000000)
table=$(printf '%s\n%s\n' "$header" "$rows")
secs() { echo "$rows" | awk -v n="$1" '$1 == n { print $2 }'; }
ratio=$(awk -v a="$(secs default)" -v b="$(secs unlimited)" 'BEGIN { printf "%.2f", a / b }')
summary="$table
time default/unlimited: ${ratio}x (the budget bounds what is written, not how fast the guest runs)"
echo "$summary"
if [ $record = yes ]; then
  dir="bench/runs/$(date +%Y-%m-%d)-$(hostname -s)"; mkdir -p "$dir"
  { echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD) $(nproc) cores, $n reports"; echo "$summary"; } > "$dir/audit-flood.txt"
  echo "recorded in $dir/audit-flood.txt" >&2
fi
