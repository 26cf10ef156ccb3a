#!/usr/bin/env bash
# Filesystem gateway benchmark: the same workloads (busybox, so the same binary everywhere) run
# natively on the host, inside a sandbox on guest-local tmpfs, and inside a sandbox on the shared
# workspace (virtio-fs through airlock-fs), all in this one invocation. The workspace/tmpfs ratio
# isolates the cost of the gateway from the cost of emulation (TCG on hosts without KVM).
# Usage: bench/fs.sh [--record]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p airlock
AIRLOCK=$PWD/target/release/airlock
BB=$(command -v busybox)
work=$(mktemp -d /tmp/airlock-fsbench.XXXXXX)
trap 'rm -rf "$work"' EXIT

# Inputs: 10k small files, one 100 MB file, a 20 MB tarball of a source-like tree.
mkdir -p "$work/ws/many" "$work/src"
for d in $(seq 0 99); do mkdir -p "$work/ws/many/$d"; for f in $(seq 0 99); do echo "$d $f" > "$work/ws/many/$d/$f.txt"; done; done
head -c 100000000 /dev/urandom > "$work/ws/big.bin"
for d in $(seq 0 39); do mkdir -p "$work/src/dir$d"; for f in $(seq 0 24); do head -c 20000 /dev/urandom | base64 > "$work/src/dir$d/file$f.c"; done; done
tar -C "$work" -cf "$work/ws/src.tar" src
rm -rf "$work/src"

# The workload script: prints "name seconds" per step, timing with /proc/uptime (10 ms steps).
cat > "$work/ws/workload.sh" <<'SH'
now() { read up _ < /proc/uptime; echo "$up"; }
step() { name=$1; shift; t0=$(now); "$@" >/dev/null 2>&1; t1=$(now); echo "$name $(echo "$t1 $t0" | awk '{printf "%.2f", $1-$2}')"; }
cd "$1"
step stat_10k_files find many -type f -exec stat -c %s {} +
step read_100MB cat big.bin
step untar_20MB tar -xf src.tar
rm -rf src
SH

native=$(cd "$work/ws" && PATH=$(dirname "$BB"):$PATH "$BB" sh workload.sh "$work/ws")
profile="$work/policy.toml"
printf 'extends = "default"\n[sandbox]\nmemory = "1GiB"\ntimeout = "30m"\n' > "$profile"
guest_tmp=$("$AIRLOCK" run --policy "$profile" --workspace "$work/ws" -- sh -c 'cp -a /workspace /tmp/copy && sh /workspace/workload.sh /tmp/copy')
guest_ws=$("$AIRLOCK" run --policy "$profile" --workspace "$work/ws" -- sh /workspace/workload.sh /workspace)

table=$(
  printf '%-18s %10s %12s %14s %12s %12s\n' workload "host s" "guest tmpfs s" "guest share s" "share/tmpfs" "share/host"
  for w in stat_10k_files read_100MB untar_20MB; do
    h=$(awk -v w=$w '$1==w{print $2}' <<<"$native")
    t=$(awk -v w=$w '$1==w{print $2}' <<<"$guest_tmp")
    s=$(awk -v w=$w '$1==w{print $2}' <<<"$guest_ws")
    awk -v w=$w -v h=$h -v t=$t -v s=$s 'BEGIN{printf "%-18s %10.2f %12.2f %14.2f %12.2f %12.2f\n", w, h, t, s, (t>0?s/t:0), (h>0?s/h:0)}'
  done
  echo "git_status_5k      n/a: the tiny image has no git (needs the debian image, issue 8)"
)
echo "$table"
if [ "${1:-}" = "--record" ]; then
  dir="bench/runs/$(date +%Y-%m-%d)-$(hostname -s)"; mkdir -p "$dir"
  { echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD) $(nproc) cores"; echo "$table"; } > "$dir/fs.txt"
  echo "recorded in $dir/fs.txt" >&2
fi
