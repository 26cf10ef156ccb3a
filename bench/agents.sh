#!/usr/bin/env bash
# Agent benchmark: the same headless Claude Code task ("create hello.txt", one shell tool call
# scripted by the test kit's fake Anthropic API) run, all in this one invocation:
#  - host:  the kit's native claude binary directly on this host (as nobody, HOME in a temp dir);
#  - cold:  `airlock run --no-daemon --agent claude-code ...`, booting its own guest;
#  - pool:  the same through `airlock daemon --pool claude-code=1`, waiting for a warm guest
#           before each run so each one is a claim.
# Each row: median over N runs of the time to the first API request and to the end, and the
# ratio to the host's. Needs root (airlock) and the registries (the kit is installed on first use).
# Usage: bench/agents.sh [--record] [-n RUNS]   (--record also saves the table under bench/runs/)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
record=no
runs=3
while [ $# -gt 0 ]; do
  case $1 in
    --record) record=yes ;;
    -n) runs=${2:?-n needs a number}; shift ;;
    *) echo "usage: bench/agents.sh [--record] [-n RUNS]" >&2; exit 2 ;;
  esac
  shift
done

cargo build -q --release -p airlock
cargo build -q --release -p airlock-testkit --example fake_models
target=${CARGO_TARGET_DIR:-$PWD/target}/release
AIRLOCK=$target/airlock
FAKE=$target/examples/fake_models
work=$(mktemp -d /tmp/al-agents.XXXXXX)
export AIRLOCK_STATE_DIR=$work/state AIRLOCK_AUDIT_DIR=$work/audit AIRLOCK_SOCKET=$work/airlock.sock
export AIRLOCK_HOMES_DIR=$work/homes
mkdir -p "$AIRLOCK_STATE_DIR" "$AIRLOCK_AUDIT_DIR" "$AIRLOCK_HOMES_DIR"
chmod 755 "$work"
daemon_pid=
cleanup() {
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -TERM "$daemon_pid"
    wait "$daemon_pid" || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "bench/agents.sh: $*" >&2; [ -s "$work/daemon.log" ] && tail -n 20 "$work/daemon.log" >&2; exit 1; }
median() { sort -g | awk '{a[NR]=$1} END{if (!NR) exit 1; m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; print m}'; }
api() { curl -sS --max-time 60 --unix-socket "$AIRLOCK_SOCKET" "$@"; }

# The kit, installed once (cached under ~/.cache/airlock/kits), gives the host run its binary.
"$AIRLOCK" agent install claude-code >/dev/null 2>&1 || true
"$AIRLOCK" run --no-daemon --agent claude-code -- true >/dev/null 2>&1 || fail "the claude-code kit does not run"
# shellcheck disable=SC2012 # the kit cache names are hex
layer=$(ls -d ~/.cache/airlock/kits/claude-code/*/ 2>/dev/null | head -n1)
[ -n "$layer" ] || fail "no claude-code kit in the cache"
mkdir -p "$work/kit"
unsquashfs -q -d "$work/kit/root" "$layer/layer.squashfs" opt/airlock/kits/claude-code >/dev/null \
  || fail "unpacking the kit layer"
claude_bin=$work/kit/root/opt/airlock/kits/claude-code/node_modules/@anthropic-ai/claude-code-linux-x64/claude

# One run of the task; MODE is host, cold or pool. Prints "first_ms finish_ms".
task() {
  local mode=$1 ws=$work/ws-$RANDOM$RANDOM
  mkdir -p "$ws"
  chmod 777 "$ws"
  cat > "$work/run.sh" <<SH
#!/bin/sh
set -e
port=\${FAKE_MODEL_URL##*:}
printf 'extends = "claude-code"\n[network]\nallow = ["127.0.0.1:%s"]\n' "\$port" > "$work/policy.toml"
case $mode in
  host)
    home=\$(mktemp -d "$work/home.XXXXXX"); chmod 777 "\$home"
    exec setpriv --reuid=65534 --regid=65534 --clear-groups env HOME="\$home" \
      ANTHROPIC_BASE_URL="\$FAKE_MODEL_URL" ANTHROPIC_API_KEY=test-key \
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 DISABLE_AUTOUPDATER=1 \
      "$claude_bin" -p "Create hello.txt." --dangerously-skip-permissions </dev/null ;;
  cold|pool)
    [ $mode = cold ] && nd=--no-daemon || nd=
    exec "$AIRLOCK" run \$nd --agent claude-code --policy "$work/policy.toml" --workspace "$ws" \
      -e ANTHROPIC_BASE_URL="\$FAKE_MODEL_URL" -e ANTHROPIC_API_KEY=test-key \
      -e no_proxy=none -e NO_PROXY=none -e CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 \
      -- claude -p "Create hello.txt." --dangerously-skip-permissions </dev/null ;;
esac
SH
  chmod +x "$work/run.sh"
  local line
  line=$(cd "$ws" && "$FAKE" anthropic -- "$work/run.sh" 2>"$work/last.log" | tail -n1) \
    || { cat "$work/last.log" >&2; fail "$mode run failed"; }
  echo "$line" | sed -E 's/.*first_request_ms=([0-9]+) finish_ms=([0-9]+).*/\1 \2/'
}

declare -A first finish
for mode in host cold; do
  f=(); t=()
  for _ in $(seq "$runs"); do
    read -r a b < <(task "$mode")
    f+=("$a"); t+=("$b")
  done
  first[$mode]=$(printf '%s\n' "${f[@]}" | median)
  finish[$mode]=$(printf '%s\n' "${t[@]}" | median)
done

"$AIRLOCK" daemon --pool claude-code=1 >"$work/daemon.log" 2>&1 &
daemon_pid=$!
wait_ready() {
  for _ in $(seq 1200); do
    ready=$(api http://d/v1/pool 2>/dev/null | sed -nE 's/.*"ready":([0-9]+).*/\1/p' | head -n1)
    [ "${ready:-0}" -ge 1 ] && return 0
    kill -0 "$daemon_pid" 2>/dev/null || fail "the daemon exited"
    sleep 0.5
  done
  fail "no warm guest after 10 minutes"
}
f=(); t=()
for _ in $(seq "$runs"); do
  wait_ready
  read -r a b < <(task pool)
  f+=("$a"); t+=("$b")
done
first[pool]=$(printf '%s\n' "${f[@]}" | median)
finish[pool]=$(printf '%s\n' "${t[@]}" | median)

accel=$("$AIRLOCK" doctor 2>/dev/null | sed -nE 's/^ *accelerator[: ]+//p' | head -n1)
table=$(
  echo "# bench/agents.sh: headless Claude Code, one tool call, median of $runs ($(date -u +%FT%TZ), $(nproc) cores, accel: ${accel:-?})"
  printf '%-34s %16s %8s %12s %8s\n' "run" "first request ms" "ratio" "finish ms" "ratio"
  for mode in host cold pool; do
    case $mode in
      host) name="host (native claude)";;
      cold) name="airlock run (cold boot)";;
      pool) name="airlock run (warm pool claim)";;
    esac
    printf '%-34s %16s %8s %12s %8s\n' "$name" "${first[$mode]}" \
      "$(awk -v a="${first[$mode]}" -v b="${first[host]}" 'BEGIN{printf "%.1fx", a/b}')" \
      "${finish[$mode]}" \
      "$(awk -v a="${finish[$mode]}" -v b="${finish[host]}" 'BEGIN{printf "%.1fx", a/b}')"
  done
)
echo "$table"
if [ "$record" = yes ]; then
  mkdir -p "$root/bench/runs"
  echo "$table" > "$root/bench/runs/agents-$(date -u +%Y%m%dT%H%M%SZ).txt"
fi
