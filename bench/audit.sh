#!/usr/bin/env bash
# Audit benchmarks: events per second appended to the hash chain (airlock-audit), the
# overhead of auditing on a file-heavy sandbox workload (audit on versus off, same invocation),
# and a guest flood of 100,000 reports (bench/audit-flood.sh: host records intact, the reports
# over the guest's budget counted).
# Usage: bench/audit.sh [--record] [--short]   (--short: the flood with 2,000 reports; the two
#   cargo benches have no short mode and run in full)
set -euo pipefail
cd "$(dirname "$0")/.."
flood_args=() record=no
for a in "$@"; do
  case $a in
    --record) record=yes; flood_args+=(--record) ;;
    --short) flood_args+=(--short) ;;
    *) echo "usage: bench/audit.sh [--record] [--short]" >&2; exit 2 ;;
  esac
done
log=$(mktemp)
trap 'rm -f "$log"' EXIT
chain=$(cargo bench -q -p airlock-audit --bench append 2>/dev/null | grep -v '^$')
# A failing overhead bench leaves the other two to run, and says why in the output.
if ! overhead=$(RUST_BACKTRACE=0 cargo bench -q -p airlock --bench audit_overhead 2>"$log" | grep -v '^$'); then
  why=$(grep -v -e '^$' -e '^Caused by:' -e '^error: bench failed' "$log" | sed 's/^ *//' | head -n 3 | paste -sd ' ' -)
  overhead="audit overhead: not measured: the audit_overhead bench failed: $why"
fi
flood=$(bench/audit-flood.sh ${flood_args[@]+"${flood_args[@]}"})
printf '%s\n\n%s\n\n%s\n' "$chain" "$overhead" "$flood"
if [ $record = yes ]; then
  dir="bench/runs/$(date +%Y-%m-%d)-$(hostname -s)"; mkdir -p "$dir"
  { echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD) $(nproc) cores"; printf '%s\n\n%s\n' "$chain" "$overhead"; } > "$dir/audit.txt"
  echo "recorded in $dir/audit.txt" >&2
fi
