#!/usr/bin/env bash
# Warm-pool benchmark, tiny image throughout, all measured in this one invocation:
#  - cold: `airlock run --no-daemon -- true`, booting its own guest (median of N);
#  - pool: `airlock run -- true` through `airlock daemon --pool tiny=2`, waiting for the pool to
#    be full again before each run so that each is a claim; each run's `pooled` is reported (from
#    the daemon's create reply, logged by `airlock run` at debug level);
#  - exec: the API's exec round trip in one running sandbox: `POST .../exec {"argv":["true"]}`
#    read to its exit line, timed by curl (`time_total`: connect, request, stream), 200 times;
#  - its anchor, in the same sandbox: the in-guest cost of spawning `true`, `/bin/true` run 200
#    times by a shell inside the guest and timed there (the scheduler clock of /proc/self/sched,
#    nanoseconds; the guest has no finer `date`), so the API's overhead is a difference.
# Until the daemon has a pool, it runs against a pool-less daemon and reports "pooled: no".
# Usage: bench/pool.sh [--record] [--short] [-n RUNS]
#   (--record also saves the table under bench/runs/; --short: 2 runs and 30 execs)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
record=no
runs=5
EXECS=200
while [ $# -gt 0 ]; do
  case $1 in
    --record) record=yes ;;
    --short) runs=2 EXECS=30 ;;
    -n) runs=${2:?-n needs a number}; shift ;;
    *) echo "usage: bench/pool.sh [--record] [--short] [-n RUNS]" >&2; exit 2 ;;
  esac
  shift
done
POOL=2
SPAWNS=200

cargo build -q --release -p airlock
AIRLOCK=${CARGO_TARGET_DIR:-$PWD/target}/release/airlock
# Short path: the daemon's and the sandboxes' unix sockets live under it.
work=$(mktemp -d /tmp/al-pool.XXXXXX)
export AIRLOCK_STATE_DIR=$work/state AIRLOCK_AUDIT_DIR=$work/audit AIRLOCK_SOCKET=$work/airlock.sock
mkdir -p "$AIRLOCK_STATE_DIR" "$AIRLOCK_AUDIT_DIR" "$work/ws"
daemon_pid=
cleanup() {
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -TERM "$daemon_pid"
    wait "$daemon_pid" || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "bench/pool.sh: $*" >&2; [ -s "$work/daemon.log" ] && tail -n 20 "$work/daemon.log" >&2; exit 1; }

now_ns() { date +%s%N; }
# Median and 99th percentile (nearest rank) of numbers on stdin.
median() { sort -g | awk '{a[NR]=$1} END{if (!NR) exit 1; m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; print m}'; }
p99() { sort -g | awk '{a[NR]=$1} END{if (!NR) exit 1; r=int(NR*0.99); if (r<NR*0.99) r++; print a[r]}'; }
api() { curl -sS --max-time 300 --unix-socket "$AIRLOCK_SOCKET" "$@"; }

cd "$work/ws"

# (a) Cold runs, before any daemon exists.
cold=()
for _ in $(seq "$runs"); do
  t0=$(now_ns)
  "$AIRLOCK" run --no-daemon --image tiny -- true || fail "cold run failed"
  cold+=($(( ($(now_ns) - t0) / 1000000 )))
done

# (b) A daemon with a warm pool, when this build has one.
pool_args=()
if grep -q -- '--pool' <<<"$("$AIRLOCK" daemon --help)"; then
  pool_args=(--pool "tiny=$POOL")
fi
"$AIRLOCK" daemon "${pool_args[@]}" 2>"$work/daemon.log" &
daemon_pid=$!
for _ in $(seq 600); do
  api -o /dev/null http://airlock/v1/sandboxes 2>/dev/null && break
  kill -0 "$daemon_pid" 2>/dev/null || fail "the daemon exited"
  sleep 0.1
done
api -o /dev/null http://airlock/v1/sandboxes || fail "the daemon did not come up"

# Warm tiny guests ready now, or nothing when the daemon has no pool.
pool_ready() {
  local reply
  reply=$(api -w '\n%{http_code}' http://airlock/v1/pool) || fail "GET /v1/pool failed"
  [ "${reply##*$'\n'}" = 200 ] || return 0
  jq -r '.images[] | select(.image == "tiny") | .ready' <<<"${reply%$'\n'*}"
}
has_pool=no
[ -n "$(pool_ready)" ] && has_pool=yes
wait_pool_full() {
  [ $has_pool = yes ] || return 0
  local deadline=$(( $(date +%s) + 300 ))
  until [ "$(pool_ready)" = "$POOL" ]; do
    kill -0 "$daemon_pid" 2>/dev/null || fail "the daemon exited"
    [ "$(date +%s)" -lt $deadline ] || fail "the pool did not fill to $POOL in 300 s: $(api http://airlock/v1/pool)"
    sleep 0.1
  done
}

pool=()
pooled=()
for i in $(seq "$runs"); do
  wait_pool_full
  t0=$(now_ns)
  AIRLOCK_LOG=airlock::cmd::run=debug NO_COLOR=1 "$AIRLOCK" run --image tiny -- true 2>"$work/run.err" \
    || fail "run $i through the daemon failed: $(cat "$work/run.err")"
  pool+=($(( ($(now_ns) - t0) / 1000000 )))
  p=$(sed 's/\x1b\[[0-9;]*m//g' "$work/run.err" | grep 'sandbox from the daemon' | grep -o 'pooled=[a-z]*' | cut -d= -f2) \
    || fail "run $i did not go through the daemon: $(cat "$work/run.err")"
  case $p in true) pooled+=(yes) ;; *) pooled+=(no) ;; esac
done

# (c) Exec round trips in one sandbox, with the pool full (no boot in the background).
wait_pool_full
id=$(api -X POST -H 'Content-Type: application/json' \
  -d "$(jq -cn --arg ws "$work/ws" '{workspace: $ws, image: "tiny"}')" http://airlock/v1/sandboxes | jq -r .id)
[[ $id =~ ^[0-9a-f]{12}$ ]] || fail "creating the exec sandbox failed: $id"
wait_pool_full
execs=()
: >"$work/stages.tsv"
for i in $(seq $EXECS); do
  t=$(api -X POST -H 'Content-Type: application/json' -d '{"argv":["true"]}' \
    -o "$work/exec.out" -w '%{time_total}' "http://airlock/v1/sandboxes/$id/exec")
  tail -n 1 "$work/exec.out" | jq -e '.exit.exit_code == 0' >/dev/null \
    || fail "exec $i did not end with exit 0: $(cat "$work/exec.out")"
  execs+=("$(awk -v t="$t" 'BEGIN{printf "%.1f", t*1000}')")
  # The exec's stages, from its exit line (a daemon that does not report them gives none).
  tail -n 1 "$work/exec.out" | jq -r --arg t "$t" '.exit.timings // empty
    | [($t | tonumber) * 1e6, .host_us, .connect_us, .guest_request_us, .guest_setup_us,
       .guest_spawn_us, .guest_run_us, .guest_drain_us] | @tsv' >>"$work/stages.tsv"
done
# The anchor: the same spawn timed inside the guest. `ts` reads the shell's own
# /proc/PID/sched (se.exec_start, ms with ns digits) without spawning anything.
# shellcheck disable=SC2016 # a script for the guest shell: its $ are the guest's
spawn_loop='ts() { while read -r k _ v; do if [ "$k" = se.exec_start ]; then T=$v; return; fi; done < /proc/$$/sched; }
/bin/true; ts; a=$T; i=0; while [ $i -lt '"$SPAWNS"' ]; do /bin/true; i=$((i+1)); done; ts; echo "spawn_loop_ms $a $T"'
spawn_out=$(api -X POST -H 'Content-Type: application/json' -d "$(jq -cn --arg s "$spawn_loop" '{argv: ["sh", "-c", $s]}')" \
  "http://airlock/v1/sandboxes/$id/exec" | jq -r 'select(.stream == "stdout") | .data' | base64 -d) \
  || fail "the in-guest spawn loop failed"
spawn_ms=$(awk -v n=$SPAWNS '$1 == "spawn_loop_ms" && $3 > $2 {printf "%.2f", ($3 - $2) / n}' <<<"$spawn_out")
[ -n "$spawn_ms" ] || fail "the in-guest spawn loop printed no timing: $spawn_out"
api -X DELETE "http://airlock/v1/sandboxes/$id" || fail "deleting $id failed"

cold_ms=$(printf '%s\n' "${cold[@]}" | median)
pool_ms=$(printf '%s\n' "${pool[@]}" | median)
exec_ms=$(printf '%s\n' "${execs[@]}" | median)
exec_p99=$(printf '%s\n' "${execs[@]}" | p99)
accel=$(awk '$2 == "accelerator" && !done {$1=""; $2=""; sub(/^ +/, ""); print; done=1}' <<<"$("$AIRLOCK" doctor 2>/dev/null || true)")
if [ ${#pool_args[@]} -gt 0 ]; then
  pool_desc="\`airlock daemon ${pool_args[*]}\`"
else
  pool_desc="\`airlock daemon\` (this build has no pool)"
fi
# The exec round trip by stage: the median over the execs of each stage, and of what lies
# between the clocks (each exec's own difference, then its median).
stages() {
  local n
  n=$(wc -l <"$work/stages.tsv")
  if [ "$n" -eq 0 ]; then
    echo
    echo "exec stages: not reported by this daemon (no \`timings\` in the exit line)"
    return
  fi
  med() { awk -F'\t' "{ print ($1) / 1000 }" "$work/stages.tsv" | median; }
  echo
  echo "API exec round trip by stage, median of $n execs (ms; guest stages are the guest agent's own clock):"
  echo
  echo "| stage | median ms |"
  echo "|---|---:|"
  echo "| curl's round trip (time_total) | $(med '$1') |"
  echo "| HTTP and the daemon's handling around the exec: round trip minus the daemon's exec time | $(med '$1 - $2') |"
  echo "| the daemon's exec time: request handed to the sandbox to exit status back | $(med '$2') |"
  echo "| of which: vsock connect to the guest's exec port | $(med '$3') |"
  echo "| of which: guest, connection accepted to request decoded | $(med '$4') |"
  echo "| of which: guest, request to fork (user, cgroup, seccomp, Landlock set-up) | $(med '$5') |"
  echo "| of which: guest, fork to the command running | $(med '$6') |"
  echo "| of which: guest, running to exit reaped | $(med '$7') |"
  echo "| of which: guest, exit to the last output sent | $(med '$8') |"
  echo "| of which: between the clocks (frames over vsock both ways, the supervisor's work): exec time minus connect and guest stages | $(med '$2 - $3 - $4 - $5 - $6 - $7 - $8') |"
}
table=$(
  echo "airlock warm pool, tiny image, $(nproc) cores, accelerator: ${accel:-unknown}"
  echo
  echo "| measurement | n | median ms | p99 ms | vs cold |"
  echo "|---|---:|---:|---:|---:|"
  echo "| cold \`airlock run --no-daemon -- true\` (boots its own guest; wall time) | $runs | $cold_ms | | 1.00 |"
  awk -v d="$pool_desc" -v n="$runs" -v p="$pool_ms" -v c="$cold_ms" -v pl="${pooled[*]}" 'BEGIN{
    printf "| `airlock run -- true` through %s (wall time; pooled: %s) | %d | %d | | %.2f |\n", d, pl, n, p, p/c }'
  echo "| API exec round trip: \`POST /v1/sandboxes/ID/exec {\"argv\":[\"true\"]}\` read to its exit line, one running sandbox (curl time_total) | $EXECS | $exec_ms | $exec_p99 | |"
  echo "| in-guest spawn of \`true\` in the same sandbox: \`/bin/true\` $SPAWNS times from sh, timed inside the guest (/proc/self/sched clock), per spawn | $SPAWNS | $spawn_ms | | |"
  echo
  awk -v e="$exec_ms" -v s="$spawn_ms" 'BEGIN{printf "API exec round trip above the in-guest spawn: %.1f ms\n", e - s}'
  stages
)
echo "$table"
if [ $record = yes ]; then
  cd "$root"
  dir="bench/runs/$(date +%Y-%m-%d)-$(hostname -s)"
  mkdir -p "$dir"
  { echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD) $(nproc) cores"; echo "$table"; } > "$dir/pool.md"
  echo "recorded in $dir/pool.md" >&2
fi
