#!/usr/bin/env bash
# Every benchmark in one invocation, one table: runs bench/egress.sh, audit.sh (with
# audit-flood.sh), skeleton.sh, pool.sh, fs.sh and density.sh one after another (never two
# VM-booting benches at once), saves each one's output as NAME.txt in bench/runs/DATE-HOST/ and
# writes summary.md there: one row per measure of issue 22's table and of issue 17's TLS goals, with the figure, its anchor
# measured in the same run, the goal and PASS, FAIL or LIMIT (missed, with the floor measured in
# the same run that prevents it), and which accelerator and how many cores produced it. A row
# whose bench does not print what it needs says "not measured" (no number is ever made up).
# bench/agents.sh is not run: it needs the agent kits and their registries.
#
# Usage: bench/all.sh [--short] [--check] [--out DIR] [--density-count N] [--summary-only DIR]
#   --short          pass --short to every bench (CI-sized: proves each still works; its
#                    figures are not comparable to a full run); writes DATE-HOST-short/
#   (without --out: bench/runs/DATE-HOST[-short]/, or DATE-HOST-2, -3... when that already has files)
#   --check          afterwards, compare the summary's figures with the last committed
#                    bench/runs/*/summary.md of the same mode; exit 1 when any is more than 20%
#                    worse (direction-aware: for a "<=" goal higher is worse, for ">=" lower is)
#   --out DIR        write there instead of bench/runs/DATE-HOST[-short]/
#   --density-count N  sandboxes for density.sh (default: its own, 50; 3 with --short)
#   --summary-only DIR  run no bench: rebuild DIR/summary.md from the NAME.txt files in DIR
set -euo pipefail
cd "$(dirname "$0")/.."
usage() { echo "usage: bench/all.sh [--short] [--check] [--out DIR] [--density-count N] [--summary-only DIR]" >&2; exit 2; }
short=no check=no out='' density_count='' summary_only=no
while [ $# -gt 0 ]; do
  case $1 in
    --short) short=yes ;;
    --check) check=yes ;;
    --out) [ -n "${2:-}" ] || { echo "bench/all.sh: --out needs a directory" >&2; usage; }; out=$2; shift ;;
    --density-count)
      [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || { echo "bench/all.sh: --density-count needs a positive number" >&2; usage; }
      density_count=$2; shift ;;
    --summary-only)
      [ -d "${2:-}" ] || { echo "bench/all.sh: --summary-only needs an existing run directory" >&2; usage; }
      out=$2 summary_only=yes; shift ;;
    -h|--help) usage ;;
    *) echo "bench/all.sh: unknown argument '$1'" >&2; usage ;;
  esac
  shift
done
suffix=''
[ $short = yes ] && suffix=-short
if [ -z "$out" ]; then
  # A folder of the same day that already holds runs (recorded by single benches) is left as it
  # is: this run goes to the next free DATE-HOST-2, -3, ...
  out="bench/runs/$(date +%Y-%m-%d)-$(hostname -s)$suffix"
  n=1 base_out=$out
  while [ -d "$out" ] && [ -n "$(ls -A "$out")" ]; do n=$((n + 1)); out="$base_out-$n"; done
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d /tmp/al-all.XXXXXX)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
# Never through a daemon someone else runs on the default socket (pool.sh and density.sh start
# their own and set this themselves).
export AIRLOCK_SOCKET=$work/no-daemon.sock

failed=()
if [ $summary_only = no ]; then
  cargo build -q --release -p airlock
  sargs=()
  [ $short = yes ] && sargs=(--short)
  for b in egress audit skeleton pool fs density; do
    args=(${sargs[@]+"${sargs[@]}"})
    [ "$b" = density ] && [ -n "$density_count" ] && args+=(--count "$density_count")
    echo "bench/all.sh: $b ($(date -u +%T))" >&2
    t0=$(date +%s)
    if "bench/$b.sh" ${args[@]+"${args[@]}"} >"$work/$b.out" 2>"$work/$b.err"; then
      { echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD) $(nproc) cores, bench/$b.sh${args[*]:+ ${args[*]}} ($(( $(date +%s) - t0 )) s)"
        cat "$work/$b.out"; } >"$out/$b.txt"
    else
      rc=$?
      failed+=("$b")
      { echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD) $(nproc) cores, bench/$b.sh${args[*]:+ ${args[*]}} FAILED (exit $rc)"
        cat "$work/$b.out"; echo "--- stderr (last 30 lines)"; tail -n 30 "$work/$b.err"; } >"$out/$b.txt"
      echo "bench/all.sh: $b failed (exit $rc); see $out/$b.txt" >&2
    fi
  done
  doctor=$("${CARGO_TARGET_DIR:-$PWD/target}/release/airlock" doctor 2>/dev/null || true)
  { awk '$2 == "accelerator" {$1 = ""; $2 = ""; sub(/^ +/, ""); print; exit}' <<<"$doctor"
    nproc
    echo "$short"
    git rev-parse --short HEAD
    date -u +%FT%TZ
    hostname -s
  } >"$out/host.txt"
fi
[ -s "$out/host.txt" ] || { echo "bench/all.sh: $out has no host.txt (not a bench/all.sh run)" >&2; exit 1; }
accel_line=$(sed -n 1p "$out/host.txt") cores=$(sed -n 2p "$out/host.txt") mode=$(sed -n 3p "$out/host.txt")
commit=$(sed -n 4p "$out/host.txt") when=$(sed -n 5p "$out/host.txt") host=$(sed -n 6p "$out/host.txt")
accel=${accel_line%% *}

# --- Reading the figures out of each bench's output. Empty when absent.
f() { [ -s "$out/$1" ] && ! head -n 1 "$out/$1" | grep -q FAILED; }   # a bench output that is usable
num() { grep -Eo '^-?[0-9]+(\.[0-9]+)?$' <<<"${1:-}" || true; }
# sk PREFIX FIELD: FIELD (negative: from the end) of skeleton.txt's first line starting with PREFIX.
sk() { f skeleton.txt || return 0; awk -v p="$1" -v c="$2" 'index($0, p) == 1 {i = (c < 0) ? NF + c + 1 : c; print $i; exit}' "$out/skeleton.txt"; }
base_ms=$(num "$(sk 'baseline: bare QEMU boot' -2)")
cold_ms=$(num "$(sk "cold \`airlock run -- true\`" -2)")
cold_ratio=$(num "$(sk "cold \`airlock run -- true\`" -1)")
exec1_ms=$(num "$(sk '  exec round trip' -2)")
spawn1_ms=$(num "$(sk 'in-guest first spawn:' -2)")
tiny_ms=$(num "$(sk 'tiny ' 2)")
debian_ms=$(num "$(sk 'debian ' 2)")
debian_ratio=$(num "$(sk 'debian ' 3)")
pl() { f pool.txt || return 0; awk -F'|' -v k="$1" 'index($2, k) == 2 {gsub(/ /, "", $4); print $4; exit}' "$out/pool.txt"; }
api_ms=$(num "$(pl 'API exec round trip')")
spawn_ms=$(num "$(pl 'in-guest spawn of')")
eg() { f egress.txt || return 0; awk -F'|' -v k="$1" -v c="$2" 'index($2, k) == 2 {gsub(/ /, "", $c); print $c; exit}' "$out/egress.txt"; }
fsr() { f fs.txt || return 0; awk -v w="$1" -v c="$2" '$1 == w {print $c; exit}' "$out/fs.txt"; }
au() { f audit.txt || return 0; awk -v k="$1" 'index($0, k) == 1 {print $(NF-1), $NF; exit}' "$out/audit.txt"; }
audit_off=$(au "audit off") audit_on=$(au "audit on")
audit_why=''
if f audit.txt && grep -q '^audit overhead: not measured' "$out/audit.txt"; then
  audit_why="bench/audit.sh's cargo bench audit_overhead failed; its reason is in audit.txt"
fi
dn() { f density.txt || return 0; awk -F'|' -v k="$1" 'index($2, k) {gsub(/[ *]/, "", $4); print $4; exit}' "$out/density.txt"; }
mem_over=$(num "$(dn 'above the guest used memory**')")
mem_over_kvm=$(num "$(dn 'without the TCG translation cache')")
mem_tcg=$(num "$(dn 'TCG translation cache (emulation only')")
mem_host=$(num "$(dn 'host total per idle sandbox')")
# The guest's used memory: the RAM it holds (RAM size - MemAvailable, its kernel's reserved
# memory included); runs recorded before density.sh printed that give MemTotal - MemAvailable.
mem_guest=$(num "$(dn 'guest RAM held')") mem_guest_what="guest RAM held: RAM size - MemAvailable"
[ -n "$mem_guest" ] || { mem_guest=$(num "$(dn 'MemTotal - MemAvailable')"); mem_guest_what="guest MemTotal - MemAvailable"; }
dl() { f density.txt || return 0; sed -n "$1" "$out/density.txt" | head -n 1; }
dens_started=$(dl 's/^started \([0-9]*\) of \([0-9]*\) requested.*/\1 of \2/p')
dens_time=$(dl 's/^time to start all [0-9]*: \([0-9.]*\) s.*/\1/p')
dens_stop=$(dl 's/^started [0-9]* of [0-9]* requested: stopped because //p')
dens_cpu=$(dl 's/^idle host CPU, \(.*\)$/\1/p')
dens_proj=$(dl 's/^at that rate \(.*\)$/\1/p')

# --- The table. row PATH MEASURED ANCHOR VALUE UNIT OP GOAL [NOTE] [LIMIT]: VALUE empty = not
# measured. LIMIT, when given, is the measurement showing that no implementation can meet the
# goal on this host (a floor measured in the same run, itself past the goal, with ours within
# the goal of that floor): a row that misses its goal then says LIMIT and why, not FAIL.
rows=() fails=0 passes=0 limits=0 unmeasured=0
meets() { awk -v v="$1" -v g="$3" -v op="$2" 'BEGIN{exit !((op == "<=") ? v <= g : v >= g)}'; }
row() {
  local path=$1 measured=$2 anchor=$3 value=$4 unit=$5 op=$6 goal=$7 note=${8:-} limit=${9:-} result shown
  if [ -z "$value" ]; then
    result="not measured"; shown="not measured yet"; unmeasured=$((unmeasured + 1))
  else
    if meets "$value" "$op" "$goal"; then
      result=PASS; passes=$((passes + 1))
    elif [ -n "$limit" ]; then
      result=LIMIT note="physical limit: $limit${note:+; $note}"; limits=$((limits + 1))
    else
      result=FAIL; fails=$((fails + 1))
    fi
    shown="$value$unit"
  fi
  rows+=("| $path | $measured | $anchor | $shown | $op $goal$unit | $result${note:+ ($note)} |")
}
ms() { [ -n "$1" ] && echo "$1 ms" || echo "-"; }
secs() { if [ -n "$(num "$1")" ]; then echo "$1 s"; else echo "${1:--}"; fi; }
diff_ms() { awk -v a="$1" -v b="$2" 'BEGIN{if (a == "" || b == "") exit; printf "%.1f", a - b}'; }

row "cold \`airlock run -- true\` / bare QEMU boot of the same kernel to power-off" "$(ms "$cold_ms")" "$(ms "$base_ms") (bare QEMU)" "$cold_ratio" "×" "<=" 1.3
row "cold run: first exec round trip minus the in-guest first spawn" "$(ms "$exec1_ms") (\`--timings\` exec)" "$(ms "$spawn1_ms") (first \`/bin/true\` timed in a fresh guest)" \
  "$(diff_ms "$exec1_ms" "$spawn1_ms")" " ms" "<=" 10
row "API exec round trip (\`POST .../exec\`, \`true\`) minus the in-guest spawn" "$(ms "$api_ms") (median)" "$(ms "$spawn_ms") (\`/bin/true\` loop in the same guest)" \
  "$(diff_ms "$api_ms" "$spawn_ms")" " ms" "<=" 5
for spec in "GET 100 MB, plain HTTP|egress, 100 MB plain HTTP, gateway/direct|MB/s|>=|0.9" \
            "GET 100 MB, CONNECT tunnel|egress, 100 MB CONNECT tunnel, gateway/direct|MB/s|>=|0.9" \
            "small GET, plain HTTP|small GET latency, plain HTTP, gateway/direct|µs|<=|1.2" \
            "small GET, CONNECT tunnel|small GET latency, CONNECT tunnel, gateway/direct|µs|<=|1.2"; do
  IFS='|' read -r key path unit op goal <<<"$spec"
  d=$(eg "$key" 3) g=$(eg "$key" 4) r=$(num "$(eg "$key" 5)")
  # The floor: a bare splice relay (no parsing, policy or accounting) on the same host and run.
  b=$(num "$(eg "$key" 6)") br=$(num "$(eg "$key" 7)") gb=$(num "$(eg "$key" 8)") limit=''
  if [ -n "$br" ] && [ -n "$gb" ] && ! meets "$br" "$op" "$goal" && meets "$gb" "$op" "$([ "$op" = "<=" ] && echo 1.2 || echo 0.9)"; then
    relay="a bare splice relay, with no parsing, policy or accounting,"
    # A CONNECT tunnel's floor pays the protocol's own round trip (CONNECT, then 200) too.
    case $key in *CONNECT*) relay="a bare splice relay that answers the CONNECT itself (the round trip every CONNECT proxy adds), with no policy or accounting," ;; esac
    limit="$relay is itself ${br}× direct ($b $unit) in this run: a second TCP hop on $cores cores; the gateway is ${gb}× that relay"
  fi
  row "$path" "${g:--} $unit (gateway)" "${d:--} $unit (direct)" "$r" "×" "$op" "$goal" "" "$limit"
done
# HTTPS the gateway terminates (issue 17) against the same origin through a CONNECT tunnel it
# passes through; the TLS table's columns: direct, passthrough, terminated, terminated/passthrough.
for spec in "GET 100 MB over HTTPS, the gateway on a core of its own|egress, 100 MB HTTPS, terminated / CONNECT passthrough, the gateway's threads on a core of their own" \
            "GET 100 MB over HTTPS, every thread on every core|egress, 100 MB HTTPS, terminated / CONNECT passthrough, every party on the same $cores cores"; do
  IFS='|' read -r key path <<<"$spec"
  p=$(eg "$key" 4) t=$(eg "$key" 5) note=''
  case $key in
    *"every core"*) cp=$(eg 'CPU time for 100 MB, all parties (' 4) ct=$(eg 'CPU time for 100 MB, all parties (' 5)
      [ -z "$ct" ] || note="CPU-bound: all parties together spend $ct ms per 100 MB terminated, $cp ms passed through" ;;
    *) cg=$(eg "CPU time for 100 MB, the gateway's threads" 5)
      [ -z "$cg" ] || note="the gateway's threads spend $cg ms per 100 MB terminated" ;;
  esac
  row "$path" "${t:--} MB/s (terminated)" "${p:--} MB/s (passthrough)" "$(num "$(eg "$key" 6)")" "×" ">=" 0.8 "$note"
done
lp=$(num "$(eg 'small HTTPS GET' 4)") lt=$(num "$(eg 'small HTTPS GET' 5)")
row "egress, small HTTPS GET on a new connection, terminated minus CONNECT passthrough" "${lt:--} µs (terminated)" "${lp:--} µs (passthrough)" \
  "$(awk -v a="$lt" -v b="$lp" 'BEGIN{if (a == "" || b == "") exit; printf "%.2f", (a - b) / 1000}')" " ms" "<=" 1
for spec in "stat_10k_files|stat 10k files|3" "read_100MB|read 100 MB|1.5" "untar_20MB|untar 20 MB|3"; do
  IFS='|' read -r w label goal <<<"$spec"
  s=$(secs "$(fsr "$w" 4)") l=$(secs "$(fsr "$w" 3)")
  # The floor: QEMU's own virtiofsd (no policy, no audit) over the same transport, same run.
  vl=$(awk -v v="$(num "$(fsr "$w" 5)")" -v l="$(num "$(fsr "$w" 3)")" 'BEGIN{if (v != "" && l > 0) printf "%.2f", v / l}')
  sv=$(num "$(fsr "$w" 7)") limit=''
  if [ -n "$vl" ] && [ -n "$sv" ] && ! meets "$vl" "<=" "$goal" && meets "$sv" "<=" 1.2; then
    limit="QEMU's virtiofsd, with no policy or audit, is itself ${vl}× the guest disk in this run: the virtio-fs transport under $accel; airlock-fs is ${sv}× virtiofsd"
  fi
  row "workspace share / guest local disk: $label" "$s (share)" "$l (guest /tmp; fs.sh's anchor is the guest's disk, not tmpfs)" "$(num "$(fsr "$w" 6)")" "×" "<=" "$goal" "" "$limit"
done
for spec in "stat_10k_files|stat 10k files" "read_100MB|read 100 MB" "untar_20MB|untar 20 MB"; do
  IFS='|' read -r w label <<<"$spec"
  s=$(secs "$(fsr "$w" 4)") v=$(secs "$(fsr "$w" 5)")
  row "airlock-fs / QEMU's virtiofsd: $label" "$s (share)" "$v (virtiofsd)" "$(num "$(fsr "$w" 7)")" "×" "<=" 1.2
done
row "audit on / audit off, 2000 file creations on the share" "$(ms "${audit_on% *}") (on)" "$(ms "${audit_off% *}") (off)" "$(num "${audit_on#* }")" "×" "<=" 1.05 "$audit_why"
row "Debian image cold run / tiny image cold run" "$(ms "$debian_ms") (debian)" "$(ms "$tiny_ms") (tiny)" "$debian_ratio" "×" "<=" 1.3
limit=''
if [ "$accel" = tcg ] && [ -n "$mem_over_kvm" ] && meets "$mem_over_kvm" "<=" 40; then
  limit="QEMU's TCG translation cache is $mem_tcg MiB of it per sandbox in this run, a cost of emulating the CPU that KVM does not have; without it the overhead is $mem_over_kvm MiB"
fi
row "host memory per idle sandbox above the guest's own used memory (PSS)" "${mem_host:--} MiB (QEMU + gateways + vsock + supervisor share)" \
  "${mem_guest:--} MiB ($mem_guest_what)" "$mem_over" " MiB" "<=" 40 "${dens_started:+$dens_started sandboxes}" "$limit"

{
  echo "# bench/all.sh summary"
  echo
  echo "$when, commit $commit, host ${host:-?}, **accelerator: $accel**, **$cores cores**, mode: $([ "$mode" = yes ] && echo "short (CI-sized; not comparable with a full run)" || echo full)"
  echo
  echo "Accelerator as \`airlock doctor\` reports it: $accel_line"
  echo
  echo "| path | measured | anchor (same run) | value | goal | result |"
  echo "|---|---|---|---:|---:|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "$passes pass, $limits at a physical limit (the row names it and the measurement showing it), $fails fail, $unmeasured not measured."
  if [ -n "$dens_started" ]; then
    echo "Density: $dens_started idle sandboxes started in ${dens_time:-?} s${dens_stop:+; stopped early because $dens_stop}."
    [ -z "$dens_cpu" ] || echo "Idle host CPU, $dens_cpu; at that rate $dens_proj."
    dens_want=${dens_started##* of }
    [ "${dens_want:-50}" -ge 50 ] || echo "Density ran with $dens_want sandboxes, not the issue's 50 (bench/all.sh --density-count; bench/density.sh defaults to 50)."
  fi
  [ ${#failed[@]} -eq 0 ] || echo "Benches that failed in this run: ${failed[*]} (their rows say not measured; see their NAME.txt)."
  echo "Each figure comes from the NAME.txt beside this file; bench/agents.sh is not part of this run."
} >"$out/summary.md"
cat "$out/summary.md"
echo "bench/all.sh: wrote $out/summary.md" >&2

status=0
[ ${#failed[@]} -eq 0 ] || status=1
if [ $check = yes ]; then
  # The last committed summary of the same mode (directory names start with the date).
  base=$(git ls-files 'bench/runs/*/summary.md' | if [ "$mode" = yes ]; then grep -- '-short/'; else grep -v -- '-short/'; fi | sort | tail -n 1 || true)
  if [ -z "$base" ]; then
    echo "bench/all.sh --check: no committed bench/runs/*/summary.md of this mode to compare with" >&2
  else
    git show "HEAD:$base" >"$work/base.md"
    # Rows by path; a figure is worse by more than 20% when, for "<=" goals, new > old + 20% |old|
    # and for ">=" goals, new < old - 20% |old|.
    if ! awk -F'|' '
        function val(s) { gsub(/[^0-9.-]/, "", s); return s }
        FNR == 1 { file++ }
        $2 ~ /^ path / || $2 ~ /^---/ || NF < 8 { next }
        file == 1 { if ($5 !~ /not measured/) old[$2] = val($5); next }
        {
          if (!($2 in old) || $5 ~ /not measured/) next
          new = val($5); o = old[$2]; lower = ($6 ~ /<=/)
          worse = lower ? (new > o + 0.2 * (o < 0 ? -o : o)) : (new < o - 0.2 * (o < 0 ? -o : o))
          printf "%s %s: %s -> %s\n", (worse ? "WORSE" : "ok   "), $2, o, new
          if (worse) bad++
        }
        END { exit bad > 0 }' "$work/base.md" "$out/summary.md" >&2; then
      echo "bench/all.sh --check: some figures are more than 20% worse than $base" >&2
      status=1
    else
      echo "bench/all.sh --check: no figure more than 20% worse than $base" >&2
    fi
  fi
fi
exit $status
