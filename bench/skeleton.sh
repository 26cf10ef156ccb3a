#!/usr/bin/env bash
# Start-up benchmark of the walking skeleton: prints a table of cold `airlock run -- true` phases
# against a bare QEMU boot baseline measured in the same run, plus the warm exec round trip.
# Usage: bench/skeleton.sh [--record]   (--record also saves the table under bench/runs/)
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(cargo bench -q -p airlock --bench skeleton 2>/dev/null | grep -v '^$')
echo "$out"
if [ "${1:-}" = "--record" ]; then
  dir="bench/runs/$(date +%Y-%m-%d)-$(hostname -s)"
  mkdir -p "$dir"
  { echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD) $(nproc) cores"; echo "$out"; } > "$dir/skeleton.txt"
  echo "recorded in $dir/skeleton.txt" >&2
fi
