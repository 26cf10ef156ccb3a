#!/usr/bin/env bash
# Audit benchmarks: events per second appended to the hash chain (airlock-audit), the
# overhead of auditing on a file-heavy sandbox workload (audit on versus off, same invocation),
# and a guest flood of 100,000 reports (bench/audit-flood.sh: host records intact, the reports
# over the guest's budget counted).
# Usage: bench/audit.sh [--record]
set -euo pipefail
cd "$(dirname "$0")/.."
chain=$(cargo bench -q -p airlock-audit --bench append 2>/dev/null | grep -v '^$')
overhead=$(cargo bench -q -p airlock --bench audit_overhead 2>/dev/null | grep -v '^$')
flood=$(bench/audit-flood.sh ${1:+"$1"})
printf '%s\n\n%s\n\n%s\n' "$chain" "$overhead" "$flood"
if [ "${1:-}" = "--record" ]; then
  dir="bench/runs/$(date +%Y-%m-%d)-$(hostname -s)"; mkdir -p "$dir"
  { echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD) $(nproc) cores"; printf '%s\n\n%s\n' "$chain" "$overhead"; } > "$dir/audit.txt"
  echo "recorded in $dir/audit.txt" >&2
fi
