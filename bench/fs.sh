#!/usr/bin/env bash
# Filesystem gateway benchmark: the same workloads (busybox, so the same binary everywhere) run
# natively on the host, inside a sandbox on the guest's own disk, inside a sandbox on the shared
# workspace (virtio-fs through airlock-fs, policy and audit on), and on the same workspace served
# by QEMU's own virtiofsd (no policy, no audit) to the same kernel and busybox, all in this one
# invocation. share/local isolates the cost of the share from the cost of emulation (TCG on
# hosts without KVM); share/virtiofsd is airlock-fs against the reference implementation.
# Usage: bench/fs.sh [--record] [--short]   (--short: small trees, to check the script runs)
set -euo pipefail
cd "$(dirname "$0")/.."
record=no short=no
for a in "$@"; do
  case $a in --record) record=yes ;; --short) short=yes ;; *) echo "usage: $0 [--record] [--short]" >&2; exit 2 ;; esac
done
cargo build -q --release -p airlock
AIRLOCK=${CARGO_TARGET_DIR:-$PWD/target}/release/airlock
BB=$(command -v busybox)
VIRTIOFSD=/usr/lib/qemu/virtiofsd
work=$(mktemp -d /tmp/airlock-fsbench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

if [ $short = yes ]; then dirs=10 big_dirs=20 big_mb=1; else dirs=100 big_dirs=2000 big_mb=100; fi
big_files=$((big_dirs * 100))

# Inputs: small files (10k), one 100 MB file, a 20 MB tarball of a source-like tree, and a
# tree of 200,000 files in 2,000 folders (also as a tarball, for the tmpfs run).
mkdir -p "$work/ws/many" "$work/src" "$work/ws/tree"
for d in $(seq 0 $((dirs - 1))); do mkdir -p "$work/ws/many/$d"; for f in $(seq 0 99); do echo "$d $f" > "$work/ws/many/$d/$f.txt"; done; done
head -c $((big_mb * 1000000)) /dev/urandom > "$work/ws/big.bin"
for d in $(seq 0 39); do mkdir -p "$work/src/dir$d"; for f in $(seq 0 24); do head -c 20000 /dev/urandom | base64 > "$work/src/dir$d/file$f.c"; done; done
tar -C "$work" -cf "$work/ws/src.tar" src
rm -rf "$work/src"
python3 - "$work/ws/tree" "$big_dirs" <<'PY'
import os, sys
root, dirs = sys.argv[1], int(sys.argv[2])
for d in range(dirs):
    p = os.path.join(root, f"{d:04}")
    os.mkdir(p)
    for f in range(100):
        with open(os.path.join(p, f"{f:03}.txt"), "w") as out:
            out.write(f"{d}/{f}\n")
PY
tar -C "$work/ws" -cf "$work/tree.tar" tree

# The workload script: prints "name seconds" per step, timing with /proc/uptime (10 ms steps).
cat > "$work/ws/workload.sh" <<'SH'
now() { read up _ < /proc/uptime; echo "$up"; }
step() { name=$1; shift; t0=$(now); "$@" >/dev/null 2>&1; rc=$?; t1=$(now); [ $rc = 0 ] || { echo "$name failed"; return; }; echo "$name $(echo "$t1 $t0" | awk '{printf "%.2f", $1-$2}')"; }
cd "$1"
# stat_10k_files: one stat per file, each name looked up again on the server, as a `git status`
# run a while after the last one does. The names are listed and cached first; the timed pass
# starts once their 1 s entry timeout has passed. (Timing `find -exec stat` measured whether
# find's readdirplus entries were still valid when stat reached them: a race with that timeout
# that went either way from run to run, about 1 s or 4 s for the same share and server.)
L=$(find many -type f); stat -c %s $L >/dev/null 2>&1; sleep 1.5
step stat_10k_files stat -c %s $L
step read_100MB cat big.bin
step untar_20MB tar -xf src.tar
step find_stat_200k find tree -type f -exec stat -c %s {} +
rm -rf src
SH

native=$(cd "$work/ws" && PATH=$(dirname "$BB"):$PATH "$BB" sh workload.sh "$work/ws")
profile="$work/policy.toml"
# The guest-local run copies every input to the guest's own disk (its /tmp, ext4 under the
# overlay): room and inodes for 200,000 more files.
printf 'extends = "default"\n[sandbox]\nmemory = "3GiB"\ndisk = "8GiB"\ntimeout = "60m"\n' > "$profile"
cp "$work/tree.tar" "$work/ws/tree.tar"
guest_tmp=$("$AIRLOCK" run --no-daemon --policy "$profile" --workspace "$work/ws" -- sh -c \
  'mkdir /tmp/copy && cd /workspace && cp -a many big.bin src.tar workload.sh /tmp/copy && tar -xf tree.tar -C /tmp/copy && sh /tmp/copy/workload.sh /tmp/copy')
rm "$work/ws/tree.tar"
guest_ws=$("$AIRLOCK" run --no-daemon --policy "$profile" --workspace "$work/ws" -- sh /workspace/workload.sh /workspace)

# The anchor: the same kernel and busybox, booted by QEMU directly with the workspace served by
# QEMU's virtiofsd, the workload run by a minimal init.
virtiofsd_out="virtiofsd missing"
# shellcheck disable=SC2012 # newest first by mtime; the cache names are hex
kernel=$(ls -t "${AIRLOCK_CACHE:-$HOME/.cache/airlock}"/kernel/*/vmlinux 2>/dev/null | head -1 || true)
if [ -x "$VIRTIOFSD" ] && [ -n "$kernel" ]; then
  mkdir -p "$work/initrd/bin" "$work/initrd/proc" "$work/initrd/sys" "$work/initrd/dev" "$work/initrd/mnt"
  cp "$BB" "$work/initrd/bin/busybox"
  cat > "$work/initrd/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mount -t virtiofs ws /mnt && sh /mnt/workload.sh /mnt
echo ANCHOR-DONE
reboot -f
INIT
  chmod +x "$work/initrd/init"
  (cd "$work/initrd" && find . | cpio -o -H newc --quiet) > "$work/anchor.cpio"
  "$VIRTIOFSD" --socket-path="$work/vfs.sock" -o source="$work/ws" -o cache=auto 2> "$work/virtiofsd.log" &
  for _ in $(seq 100); do [ -S "$work/vfs.sock" ] && break; sleep 0.1; done
  accel=tcg,thread=multi
  "$AIRLOCK" doctor 2>/dev/null | grep -q '^ok   accelerator *kvm' && accel=kvm
  # libvhost-user (QEMU's virtiofsd) serves modern virtio only; microvm defaults to legacy mmio.
  qemu-system-x86_64 -M microvm,x-option-roms=off,isa-serial=on,rtc=on,acpi=off,memory-backend=mem \
    -global virtio-mmio.force-legacy=false \
    -object memory-backend-memfd,id=mem,size=3G,share=on -accel "$accel" -cpu max -m 3G -smp 1 \
    -nodefaults -no-user-config -nographic -serial stdio -no-reboot \
    -chardev socket,id=fs,path="$work/vfs.sock" -device vhost-user-fs-device,chardev=fs,tag=ws \
    -kernel "$kernel" -initrd "$work/anchor.cpio" -append 'console=ttyS0 reboot=t panic=-1 quiet' \
    > "$work/anchor.log" 2>&1 || true
  virtiofsd_out=$(grep -E '^[A-Za-z0-9_]+ ([0-9.]+|failed)' "$work/anchor.log" | tr -d '\r' || true)
fi

table=$(
  printf '%-16s %9s %12s %12s %13s %12s %15s\n' workload "host s" "guest local" "guest share" "virtiofsd" "share/local" "share/virtiofsd"
  for w in stat_10k_files read_100MB untar_20MB find_stat_200k; do
    h=$(awk -v w=$w '$1==w{print $2}' <<<"$native")
    t=$(awk -v w=$w '$1==w{print $2}' <<<"$guest_tmp")
    s=$(awk -v w=$w '$1==w{print $2}' <<<"$guest_ws")
    v=$(awk -v w=$w '$1==w{print $2}' <<<"$virtiofsd_out")
    awk -v w=$w -v h="$h" -v t="$t" -v s="$s" -v v="${v:-n/a}" 'BEGIN{
      r1 = (t+0 > 0 && s != "failed") ? sprintf("%.2f", s/t) : "-";
      r2 = (v+0 > 0 && s != "failed") ? sprintf("%.2f", s/v) : "-";
      printf "%-16s %9s %12s %12s %13s %12s %15s\n", w, h, t, s, v, r1, r2}'
  done
  echo "(find_stat_200k: $big_files files; the host's ulimit -n is $(ulimit -Hn); 'failed' means the run did not finish)"
  echo "git_status_5k    n/a: the tiny image has no git (see the debian test debian_git_status_on_a_100k_file_repository)"
)
echo "$table"
if [ $record = yes ]; then
  dir="bench/runs/$(date +%Y-%m-%d)-$(hostname -s)"; mkdir -p "$dir"
  { echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD) $(nproc) cores"; echo "$table"; } > "$dir/fs.txt"
  echo "recorded in $dir/fs.txt" >&2
fi
