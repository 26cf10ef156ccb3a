#!/usr/bin/env bash
# Density benchmark: N idle sandboxes of the tiny image, created one after another through
# `airlock daemon` (POST /v1/sandboxes, default profile, one workspace directory each), all
# measured in this one invocation:
#  - the time to start all of them (wall time of the creates) and each create's `start_ms`;
#  - host memory per idle sandbox: PSS (/proc/PID/smaps_rollup) of each process under the daemon,
#    by kind (QEMU, `airlock __gateway fs`, `airlock __gateway egress`, vhost-device-vsock, other),
#    plus the supervisor's share (the daemon's own PSS divided by the sandboxes), summed over all
#    sandboxes and divided by their number (PSS splits pages shared between processes, such as
#    guest RAM mapped by QEMU and the vhost-user backends, so the sum counts each page once);
#  - QEMU's PSS split into guest RAM (the memfd) and TCG's translation cache (none under KVM);
#  - the guest's own used memory: /proc/meminfo read inside each guest through the exec API:
#    the guest RAM it holds (its RAM size - MemAvailable, which counts what its kernel reserved
#    before MemTotal; the table's "guest used"), MemTotal - MemAvailable and MemTotal - MemFree;
#  - the host CPU the idle sandboxes burn (all processes under the daemon, over 10 s);
#  - memory given back: the guest RAM all QEMUs on the host map, before, at the peak of a
#    200 MiB write to one guest's /tmp, and 10 s after the guest deleted it (free page reporting).
# The creates stop early, and the table says why, when one fails, one takes longer than
# --start-timeout, or the host has less than --min-free MiB available: a 2-core TCG host may not
# hold N; the table then reports how far it got.
# Usage: bench/density.sh [--record] [--short] [--count N] [--start-timeout S] [--min-free MIB]
#   (--short: 3 sandboxes; --record also saves the table under bench/runs/)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
usage() { echo "usage: bench/density.sh [--record] [--short] [--count N] [--start-timeout SECONDS] [--min-free MIB]" >&2; exit 2; }
posint() { [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || { echo "bench/density.sh: $1 needs a positive number, got '${2:-}'" >&2; usage; }; }
record=no count='' short=no start_timeout=180 min_free=3072
while [ $# -gt 0 ]; do
  case $1 in
    --record) record=yes ;;
    --short) short=yes ;;
    --count) posint "$1" "${2:-}"; count=$2; shift ;;
    --start-timeout) posint "$1" "${2:-}"; start_timeout=$2; shift ;;
    --min-free) posint "$1" "${2:-}"; min_free=$2; shift ;;
    -h|--help) usage ;;
    *) echo "bench/density.sh: unknown argument '$1'" >&2; usage ;;
  esac
  shift
done
if [ -z "$count" ]; then
  if [ $short = yes ]; then count=3; else count=50; fi
fi
SETTLE=10

cargo build -q --release -p airlock
AIRLOCK=${CARGO_TARGET_DIR:-$PWD/target}/release/airlock
# Short path: the daemon's and the sandboxes' unix sockets live under it.
work=$(mktemp -d /tmp/al-density.XXXXXX)
export AIRLOCK_STATE_DIR=$work/state AIRLOCK_AUDIT_DIR=$work/audit AIRLOCK_SOCKET=$work/airlock.sock
mkdir -p "$AIRLOCK_STATE_DIR" "$AIRLOCK_AUDIT_DIR" "$work/ws"
daemon_pid=
cleanup() {
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    # SIGTERM stops every sandbox cleanly; give 50 guests time to go, then insist.
    kill -TERM "$daemon_pid"
    for _ in $(seq 1200); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$daemon_pid" 2>/dev/null && kill -KILL "$daemon_pid"
    wait "$daemon_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fail() { echo "bench/density.sh: $*" >&2; [ -s "$work/daemon.log" ] && tail -n 20 "$work/daemon.log" >&2; exit 1; }
api() { curl -sS --unix-socket "$AIRLOCK_SOCKET" "$@"; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
mem_available_mib() { awk '$1 == "MemAvailable:" {print int($2 / 1024)}' /proc/meminfo; }
median() { sort -g | awk '{a[NR]=$1} END{if (!NR) {print "-"; exit} m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; print m}'; }

"$AIRLOCK" daemon --max-sandboxes "$count" --idle-timeout 0 --max-lifetime 0 2>"$work/daemon.log" &
daemon_pid=$!
for _ in $(seq 600); do
  api -o /dev/null --max-time 5 http://airlock/v1/sandboxes 2>/dev/null && break
  kill -0 "$daemon_pid" 2>/dev/null || fail "the daemon exited"
  sleep 0.1
done
api -o /dev/null --max-time 5 http://airlock/v1/sandboxes || fail "the daemon did not come up"
pss_kib() { awk '$1 == "Pss:" {print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
daemon_idle_kib=$(pss_kib "$daemon_pid")

# (a) Create N sandboxes one after another; stop at the first that fails or is too slow.
ids=() starts=() stop_reason=
t0=$(now_ms)
for i in $(seq "$count"); do
  avail=$(mem_available_mib)
  if [ "$avail" -lt "$min_free" ]; then
    stop_reason="the host had ${avail} MiB available, below --min-free ${min_free} MiB"
    break
  fi
  mkdir -p "$work/ws/$i"
  body=$(jq -cn --arg ws "$work/ws/$i" '{workspace: $ws, image: "tiny", idle_timeout_secs: 0, max_lifetime_secs: 0, labels: {bench: "density"}}')
  if ! reply=$(api --max-time "$start_timeout" -X POST -H 'Content-Type: application/json' -d "$body" \
      -w '\n%{http_code}' http://airlock/v1/sandboxes 2>"$work/curl.err"); then
    stop_reason="create $i did not answer within --start-timeout ${start_timeout} s ($(tr '\n' ' ' <"$work/curl.err"))"
    break
  fi
  code=${reply##*$'\n'} reply=${reply%$'\n'*}
  id=$(jq -r '.id // empty' <<<"$reply" 2>/dev/null || true)
  if [ "$code" != 201 ] || ! [[ $id =~ ^[0-9a-f]{12}$ ]]; then
    stop_reason="create $i failed with HTTP $code: $(head -c 300 <<<"$reply")"
    break
  fi
  ids+=("$id")
  starts+=("$(jq -r '.start_ms // empty' <<<"$reply")")
  echo "density: $i/$count started ($id, ${starts[-1]} ms, host MemAvailable ${avail} MiB)" >&2
done
t_all_ms=$(( $(now_ms) - t0 ))
started=${#ids[@]}
[ "$started" -gt 0 ] || fail "no sandbox started: $stop_reason"
memory_mib=$(api --max-time 30 "http://airlock/v1/sandboxes/${ids[0]}" | jq -r .memory_mib)

# (b) Let them idle, then read the host side (before any exec touches the guests again).
sleep $SETTLE
host=$(python3 - "$daemon_pid" "$started" <<'PY'
import os, sys, time
daemon, n = int(sys.argv[1]), int(sys.argv[2])
def procs():
    children = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(p))
    out, todo = [], [daemon]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out
def kind(pid):
    if pid == daemon:
        return "supervisor"
    try:
        comm = open(f"/proc/{pid}/comm").read().strip()
        argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
    except OSError:
        return None
    if comm.startswith("qemu-system"):
        return "qemu"
    if comm.startswith("vhost-device-vs"):
        return "vsock"
    if b"__gateway" in argv:
        i = argv.index(b"__gateway")
        what = argv[i + 1].decode() if i + 1 < len(argv) else "?"
        return f"gateway_{what}"
    try:
        if os.readlink(f"/proc/{pid}/exe") == os.readlink(f"/proc/{daemon}/exe"):
            return "jail"
    except OSError:
        pass
    return "other:" + comm
def pss(pid):
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
def qemu_parts(pid):
    """QEMU's PSS split by mapping, KiB: guest RAM (the memfd), TCG's translation cache (its one
    anonymous read-write-execute mapping; absent under KVM), and the rest."""
    parts = {"ram": 0, "tcg": 0}
    total, what = 0, None
    try:
        for line in open(f"/proc/{pid}/smaps"):
            f = line.split()
            if len(f) >= 5 and "-" in f[0] and ":" not in f[0]:
                name = " ".join(f[5:])
                what = "ram" if "memfd:mem" in name else "tcg" if (f[1] == "rwxp" and not name) else None
            elif f and f[0] == "Pss:":
                kib = int(f[1])
                total += kib
                if what:
                    parts[what] += kib
    except (OSError, ValueError, IndexError):
        pass
    return parts
def cpu_ticks(pids):
    t = 0
    for pid in pids:
        try:
            f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            t += int(f[11]) + int(f[12])
        except (OSError, IndexError, ValueError):
            pass
    return t
pids = procs()
sums, counts = {}, {}
for pid in pids:
    k = kind(pid)
    if k is None:
        continue
    sums[k] = sums.get(k, 0) + pss(pid)
    counts[k] = counts.get(k, 0) + 1
    if k == "qemu":
        for part, kib in qemu_parts(pid).items():
            sums["qemu_" + part] = sums.get("qemu_" + part, 0) + kib
            counts["qemu_" + part] = counts.get("qemu_" + part, 0) + 1
c0, w0 = cpu_ticks(pids), time.time()
time.sleep(10)
c1, w1 = cpu_ticks(pids), time.time()
hz = os.sysconf("SC_CLK_TCK")
for k in sorted(sums):
    print(f"pss {k} {sums[k]} {counts[k]}")
print(f"cpu {100.0 * (c1 - c0) / hz / (w1 - w0):.1f}")
PY
)

# (c) The guests' own view: /proc/meminfo inside each, through the exec API.
guest_avail=() guest_free=() guest_ram=()
for id in "${ids[@]}"; do
  out=$(api --max-time 60 -X POST -H 'Content-Type: application/json' -d '{"argv":["cat","/proc/meminfo"]}' \
    "http://airlock/v1/sandboxes/$id/exec" | jq -r 'select(.stream == "stdout") | .data' | base64 -d) \
    || fail "reading /proc/meminfo in $id failed"
  guest_avail+=("$(awk '$1=="MemTotal:"{t=$2} $1=="MemAvailable:"{a=$2} END{printf "%.1f", (t-a)/1024}' <<<"$out")")
  # All the RAM the guest holds: what it does not count as available, including the memory its
  # kernel reserved before MemTotal was counted (its image, the page array).
  guest_ram+=("$(awk -v ram="$memory_mib" '$1=="MemAvailable:"{printf "%.1f", ram - $2/1024}' <<<"$out")")
  guest_free+=("$(awk '$1=="MemTotal:"{t=$2} $1=="MemFree:"{f=$2} END{printf "%.1f", (t-f)/1024}' <<<"$out")")
done
g_used=$(printf '%s\n' "${guest_avail[@]}" | median)
g_held=$(printf '%s\n' "${guest_ram[@]}" | median)

# (d) Memory given back: one guest fills 200 MiB of its /tmp, then deletes it; the guests
# report free blocks to QEMU (virtio-balloon free page reporting), which drops them.
memfd_mib() {
  local total=0 pid kib
  for pid in $(pgrep '^qemu-system' || true); do
    kib=$(awk '/^[0-9a-f]+-[0-9a-f]+ /{m = ($0 ~ /memfd:mem/)} m && $1 == "Rss:" {r += $2} END{print r + 0}' "/proc/$pid/smaps" 2>/dev/null || echo 0)
    total=$((total + kib))
  done
  echo $((total / 1024))
}
gexec() { api --max-time 120 -X POST -H 'Content-Type: application/json' -d "$2" "http://airlock/v1/sandboxes/$1/exec" >/dev/null; }
burst_before=$(memfd_mib)
gexec "${ids[0]}" '{"argv":["dd","if=/dev/zero","of=/tmp/burst","bs=1M","count=200"]}' || fail "the 200 MiB burst failed"
burst_peak=$(memfd_mib)
gexec "${ids[0]}" '{"argv":["rm","/tmp/burst"]}' || fail "removing the burst failed"
sleep $SETTLE
burst_after=$(memfd_mib)
g_nonfree=$(printf '%s\n' "${guest_free[@]}" | median)
start_med=$(printf '%s\n' "${starts[@]}" | median)
accel=$(awk '$2 == "accelerator" && !done {print $3; done=1}' <<<"$("$AIRLOCK" doctor 2>/dev/null || true)")

table=$(
  awk -v n="$started" -v want="$count" -v mem="$memory_mib" -v accel="${accel:-unknown}" -v cores="$(nproc)" \
      -v tall="$t_all_ms" -v smed="$start_med" -v slast="${starts[-1]}" -v reason="$stop_reason" \
      -v didle="$daemon_idle_kib" -v gused="$g_used" -v gnonfree="$g_nonfree" -v gheld="$g_held" -v host="$host" \
      -v bbefore="$burst_before" -v bpeak="$burst_peak" -v bafter="$burst_after" -v settle="$SETTLE" 'BEGIN{
    split(host, lines, "\n")
    for (i in lines) { split(lines[i], f, " ")
      if (f[1] == "pss") { pss[f[2]] = f[3]; cnt[f[2]] = f[4] }
      if (f[1] == "cpu") cpu = f[2] }
    printf "airlock density: idle sandboxes of the tiny image through `airlock daemon` (default profile, %s MiB guests), %s cores, accelerator: %s\n", mem, cores, accel
    if (n < want) printf "started %d of %d requested: stopped because %s\n", n, want, reason
    else printf "started %d of %d requested\n", n, want
    printf "time to start all %d: %.1f s (one create after another; start_ms median %s, last %s)\n\n", n, tall/1000, smed, slast
    print "| per idle sandbox | processes | PSS MiB |"
    print "|---|---:|---:|"
    total = 0
    split("qemu gateway_fs gateway_egress vsock jail", order, " ")
    label["qemu"] = "QEMU"; label["gateway_fs"] = "fs gateway (`airlock __gateway fs`)"
    label["gateway_egress"] = "egress gateway (`airlock __gateway egress`)"; label["vsock"] = "vhost-device-vsock"
    label["jail"] = "engine jail intermediate (a fork of the daemon, QEMU'"'"'s parent)"
    for (j = 1; j <= 5; j++) { k = order[j]
      printf "| %s | %d | %.1f |\n", label[k], cnt[k], pss[k]/1024/n; total += pss[k]
      if (k == "qemu") {
        printf "| of which guest RAM (the memfd QEMU maps) | | %.1f |\n", pss["qemu_ram"]/1024/n
        printf "| of which TCG translation cache (emulation only; none under KVM) | | %.1f |\n", pss["qemu_tcg"]/1024/n
      } }
    for (k in pss) if (k ~ /^other:/) { printf "| other: %s | %d | %.1f |\n", substr(k, 7), cnt[k], pss[k]/1024/n; total += pss[k] }
    printf "| supervisor share (daemon PSS / %d; %.1f MiB with no sandbox) | 1 | %.1f |\n", n, didle/1024, pss["supervisor"]/1024/n
    total += pss["supervisor"]
    printf "| **host total per idle sandbox** | | **%.1f** |\n", total/1024/n
    printf "| guest used, MemTotal - MemAvailable (median of %d guests) | | %.1f |\n", n, gused
    printf "| guest used, MemTotal - MemFree (median; includes page cache) | | %.1f |\n", gnonfree
    printf "| guest RAM held, %s MiB - MemAvailable (median; includes what its kernel reserved before counting MemTotal) | | %.1f |\n", mem, gheld
    printf "| **host per idle sandbox above the guest used memory** (goal <= 40; guest used = RAM held) | | **%.1f** |\n", total/1024/n - gheld
    printf "| host per idle sandbox above the guest used memory, without the TCG translation cache | | %.1f |\n", total/1024/n - gheld - pss["qemu_tcg"]/1024/n
    printf "\nmemory given back: guest RAM mapped by all QEMUs %d MiB; one guest wrote 200 MiB to its /tmp: %d MiB; %d s after it deleted them: %d MiB\n", bbefore, bpeak, settle, bafter
    printf "\nidle host CPU, all processes under the daemon over 10 s: %.1f%% of one core (%.2f%% per sandbox)\n", cpu, cpu/n
    printf "at that rate 50 idle sandboxes would keep %.1f cores busy (this host has %d)\n", cpu/n*50/100, cores
  }'
)
echo "$table"
if [ $record = yes ]; then
  cd "$root"
  dir="bench/runs/$(date +%Y-%m-%d)-$(hostname -s)"
  mkdir -p "$dir"
  { echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD) $(nproc) cores"; echo "$table"; } > "$dir/density.txt"
  echo "recorded in $dir/density.txt" >&2
fi
