#!/usr/bin/env bash
# Start-up benchmark of the walking skeleton: prints a table of cold `airlock run -- true` phases
# against a bare QEMU boot baseline measured in the same run, plus the warm exec round trip.
# Then, in the same invocation, interleaved cold runs (`airlock run --no-daemon --timings`):
#  - `-- true` on the tiny image and on the Debian image (when built), total_ms, and their ratio;
#  - the anchor of the cold run's exec round trip: the in-guest cost of the first spawn, a fresh
#    tiny guest's shell timing its first `/bin/true` with the scheduler clock of /proc/self/sched
#    (nanoseconds; the guest's busybox `date` has no %N). The stamp before the spawn may be up to
#    one scheduler tick (4 ms) early, so this can only overstate the in-guest cost.
# Usage: bench/skeleton.sh [--record] [--short]
#   (--record also saves the table under bench/runs/; --short: 2 cold runs per image instead of 5,
#   the cargo bench itself always runs in full: it has no short mode)
set -euo pipefail
cd "$(dirname "$0")/.."
record=no runs=5
for a in "$@"; do
  case $a in
    --record) record=yes ;;
    --short) runs=2 ;;
    *) echo "usage: bench/skeleton.sh [--record] [--short]" >&2; exit 2 ;;
  esac
done
work=$(mktemp -d /tmp/al-skel.XXXXXX)
trap 'rm -rf "$work"' EXIT
# Never through a daemon someone else runs; state and audit logs of these runs stay in $work.
export AIRLOCK_SOCKET=$work/no-daemon.sock AIRLOCK_STATE_DIR=$work/state AIRLOCK_AUDIT_DIR=$work/audit
mkdir -p "$AIRLOCK_STATE_DIR" "$AIRLOCK_AUDIT_DIR" "$work/ws"

if ! out=$(cargo bench -q -p airlock --bench skeleton 2>"$work/bench.err"); then
  cat "$work/bench.err" >&2
  echo "bench/skeleton.sh: the skeleton benchmark failed" >&2
  exit 1
fi
out=$(grep -v '^$' <<<"$out")
echo "$out"

cargo build -q --release -p airlock
AIRLOCK=${CARGO_TARGET_DIR:-$PWD/target}/release/airlock
median() { sort -g | awk '{a[NR]=$1} END{if (!NR) {print "-"; exit} m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; print m}'; }
# shellcheck disable=SC2016 # a script for the guest shell: its $ are the guest's
first_spawn='ts() { while read -r k _ v; do if [ "$k" = se.exec_start ]; then T=$v; return; fi; done < /proc/$$/sched; }
ts; a=$T; /bin/true; ts; echo "first_spawn_ms $a $T"'
# One cold run; prints its total_ms (from --timings). Args: image, then the command.
cold() {
  local image=$1
  shift
  (cd "$work/ws" && "$AIRLOCK" run --no-daemon --timings --image "$image" -- "$@") >"$work/run.out" 2>"$work/run.err" || {
    echo "bench/skeleton.sh: cold run on $image failed:" >&2; tail -n 5 "$work/run.err" >&2; return 1; }
  tail -n 1 "$work/run.err" | jq -r .total_ms
}
has_debian=no
images=$("$AIRLOCK" image ls 2>/dev/null || true)
[ -n "$(awk '$1 == "debian"' <<<"$images")" ] && has_debian=yes
tiny=() debian=() spawn=()
for _ in $(seq "$runs"); do
  tiny+=("$(cold tiny true)")
  [ $has_debian = no ] || debian+=("$(cold debian true)")
  cold tiny sh -c "$first_spawn" >/dev/null
  spawn+=("$(awk '$1 == "first_spawn_ms" && $3 >= $2 {printf "%.2f", $3 - $2}' "$work/run.out")")
done
tiny_ms=$(printf '%s\n' "${tiny[@]}" | median)
if [ $has_debian = yes ]; then debian_ms=$(printf '%s\n' "${debian[@]}" | median); else debian_ms=; fi
spawn_ms=$(printf '%s\n' "${spawn[@]}" | grep . | median)
more=$(
  echo "cold run by image: \`airlock run --no-daemon --timings --image IMAGE -- true\`, total_ms, median of $runs, interleaved"
  printf '%-12s %10s %8s\n' image "median ms" ratio
  printf '%-12s %10.0f %8s\n' tiny "$tiny_ms" 1.00
  if [ -n "$debian_ms" ]; then
    awk -v d="$debian_ms" -v t="$tiny_ms" 'BEGIN{printf "%-12s %10.0f %8.2f\n", "debian", d, d/t}'
  else
    echo "debian       n/a: no Debian image built (airlock image build)"
  fi
  echo "in-guest first spawn: \`/bin/true\` from sh in a fresh tiny guest, /proc/self/sched clock, median of $runs: $spawn_ms ms"
)
echo
echo "$more"
out=$(printf '%s\n\n%s\n' "$out" "$more")
if [ $record = yes ]; then
  dir="bench/runs/$(date +%Y-%m-%d)-$(hostname -s)"
  mkdir -p "$dir"
  { echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD) $(nproc) cores"; echo "$out"; } > "$dir/skeleton.txt"
  echo "recorded in $dir/skeleton.txt" >&2
fi
