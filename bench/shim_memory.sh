#!/usr/bin/env bash
# shim_memory.sh: what an idle container's supervisor costs. COUNT (100) containers each running
# `sleep 3600` from the busybox test image, one set at a time, and the supervisors' summed PSS
# and RSS (/proc/PID/smaps_rollup) divided by COUNT:
#   containerd-shim-runc-v2   a private containerd (lib.sh's start_reference_containerd),
#                             `ctr run -d` with its own --runc-root and --fifo-dir
#   conmon                    Debian's conmon (podman's monitor) over runc, one bundle per
#                             container sharing one read-only rootfs, then `runc start`
#   berth-shim                contentd, snapshotd, imaged and execd (lib.sh's
#                             start_berth_daemons), `berth run -d`; plus execd's RSS
# PSS splits shared pages between the processes sharing them, so it is what COUNT more
# containers really add; RSS counts shared pages in every process. The berth line is left out,
# saying why, when execd cannot run a task yet.
#
# Environment: COUNT (100), BUILD_DIR (<repo>/build), BENCH_TMP (/var/tmp), KEEP=1 keeps the
# work dir. Runs as root.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
COUNT=${COUNT:-100}
BUILD_DIR=${BUILD_DIR:-$repo/build}
BENCH_TMP=${BENCH_TMP:-/var/tmp}
berth_binaries "$BUILD_DIR"

require shim_memory "$contentd_bin" "$snapshotd_bin" "$imaged_bin" "$execd_bin" "$berth_bin" \
  containerd ctr runc umoci skopeo docker-registry jq curl python3
[ "$(id -u)" = 0 ] || { echo "shim_memory: run as root" >&2; exit 1; }

base=$(mktemp -d "$BENCH_TMP/bt-shim-XXXXXX")
work=$base
registry_pid= contentd_pid= snapshotd_pid= imaged_pid= execd_pid= containerd_pid=

conmons=()
kill_conmon_set() {
  local id pid
  for id in $(runc --root "$work/conmon-runc" list -q 2>/dev/null); do
    runc --root "$work/conmon-runc" delete -f "$id" 2>/dev/null || true
  done
  for pid in "${conmons[@]}"; do
    stop_pid "$pid"
  done
  conmons=()
}
cleanup() {
  if [ -n "$containerd_pid" ]; then
    ctrd tasks ls -q 2>/dev/null | while read -r id; do ctrd tasks kill -s SIGKILL "$id" 2>/dev/null || true; done
  fi
  kill_conmon_set
  if [ -n "$execd_pid" ]; then
    berth ps -a --json 2>/dev/null | jq -r '.[].id' | while read -r id; do
      berth rm -f "$id" > /dev/null 2>&1 || true
    done
  fi
  stop_everything
  close_work_dir shim_memory
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# sum_memory PID...: prints "PSS_KIB RSS_KIB" summed over the processes.
sum_memory() {
  local pid pss=0 rss=0 p r
  for pid in "$@"; do
    read -r p r < <(awk '/^Pss:/ {p = $2} /^Rss:/ {r = $2} END {print p + 0, r + 0}' \
      "/proc/$pid/smaps_rollup")
    pss=$((pss + p)); rss=$((rss + r))
  done
  echo "$pss $rss"
}
declare -A pss_of rss_of count_of
record() {  # record NAME PID...
  local name=$1; shift
  local sums
  sums=$(sum_memory "$@")
  count_of[$name]=$#
  pss_of[$name]=${sums% *}
  rss_of[$name]=${sums#* }
}
pids_by_cmdline() {  # pids_by_cmdline PROGRAM PATTERN: PROGRAM's processes whose command line has PATTERN
  local pid
  for pid in $(pgrep -f -- "$1"); do
    if tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2"; then
      echo "$pid"
    fi
  done
}

# ---- the image, in a registry
push_busybox_image shim_memory

# ---- containerd-shim-runc-v2
start_reference_containerd "$work"
ctrd images pull --plain-http "$image" > "$work/ctr-pull.log" 2>&1 ||
  { echo "shim_memory: ctr images pull failed:"; cat "$work/ctr-pull.log"; exit 1; } >&2
mkdir -p "$work/ctr-fifo" "$work/ctr-runc"
echo "shim_memory: starting $COUNT containers with ctr run -d" >&2
for i in $(seq "$COUNT"); do
  ctrd run -d --fifo-dir "$work/ctr-fifo" --runc-root "$work/ctr-runc" "$image" "ctr-$i" \
    /bin/sleep 3600 > /dev/null
done
mapfile -t shims < <(pids_by_cmdline containerd-shim-runc-v2 "-address $dsock")
record containerd-shim-runc-v2 "${shims[@]}"
for i in $(seq "$COUNT"); do
  ctrd tasks kill -s SIGKILL "ctr-$i" > /dev/null
done
for i in $(seq "$COUNT"); do
  ctrd tasks rm -f "ctr-$i" > /dev/null 2>&1 || true
  ctrd containers rm "ctr-$i" > /dev/null
done
stop_pid "$containerd_pid"; containerd_pid=

# ---- conmon
if command -v conmon > /dev/null; then
  echo "shim_memory: starting $COUNT containers with conmon" >&2
  umoci unpack --image "$work/layout:latest" "$work/conmon-bundle" > /dev/null
  mkdir -p "$work/conmon-exits" "$work/conmon-socks"
  for i in $(seq "$COUNT"); do
    b=$work/conmon/$i
    mkdir -p "$b"
    jq --arg root "$work/conmon-bundle/rootfs" --arg cg "/bench-conmon/$i" \
      '.process.args = ["/bin/sleep", "3600"] | .process.terminal = false |
       .root = {path: $root, readonly: true} | .linux.cgroupsPath = $cg' \
      "$work/conmon-bundle/config.json" > "$b/config.json"
    conmon --api-version 1 -c "cm-$i" -u "cm-$i" -n "cm-$i" -r "$(command -v runc)" \
      --runtime-arg --root --runtime-arg "$work/conmon-runc" -b "$b" -p "$b/pid" \
      -P "$b/conmon.pid" -l "k8s-file:$b/log" --exit-dir "$work/conmon-exits" \
      --socket-dir-path "$work/conmon-socks" > "$b/conmon.out" 2>&1
    # conmon returns before the runtime's create is done; the container's pid file says it is.
    wait_for 20 test -s "$b/pid" ||
      { echo "shim_memory: conmon did not create cm-$i:"; cat "$b/conmon.out"; exit 1; } >&2
    runc --root "$work/conmon-runc" start "cm-$i"
    conmons+=("$(cat "$b/conmon.pid")")
  done
  record conmon "${conmons[@]}"
  kill_conmon_set
else
  echo "shim_memory: conmon not installed, leaving it out" >&2
fi

# ---- berth-shim
start_berth_daemons "$work/berth" execd
berth pull --insecure-registry "$host" "$image" > "$work/berth-pull.log" 2>&1 ||
  { echo "shim_memory: berth pull failed:"; cat "$work/berth-pull.log"; exit 1; } >&2
export BERTH_RUN_DIR=$work/berth-cli
echo "shim_memory: starting $COUNT containers with berth run -d" >&2
berth_ok=1
for i in $(seq "$COUNT"); do
  if ! berth run -d --name "berth-$i" "$image" /bin/sleep 3600 > "$work/berth-run.log" 2>&1; then
    echo "shim_memory: berth run -d does not work here yet, leaving berth out:" >&2
    tail -5 "$work/berth-run.log" >&2
    berth_ok=0
    break
  fi
done
if [ "$berth_ok" = 1 ]; then
  mapfile -t shims < <(pids_by_cmdline berth-shim "$work/berth/")
  record berth-shim "${shims[@]}"
  execd_rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$execd_pid/status")
fi

# ---- the figures
echo
printf '%-26s %10s %14s %14s %14s\n' supervisor processes "PSS/ctr KiB" "RSS/ctr KiB" "PSS total MiB"
for name in containerd-shim-runc-v2 conmon berth-shim; do
  [ -n "${count_of[$name]:-}" ] || continue
  printf '%-26s %10d %14d %14d %14.1f\n' "$name" "${count_of[$name]}" \
    $((pss_of[$name] / COUNT)) $((rss_of[$name] / COUNT)) "$(awk -v k="${pss_of[$name]}" 'BEGIN {print k / 1024}')"
done
if [ -n "${count_of[berth-shim]:-}" ]; then
  echo "execd RSS with $COUNT containers: $((execd_rss / 1024)) MiB"
  awk -v b="${pss_of[berth-shim]}" -v c="${pss_of[containerd-shim-runc-v2]}" \
      -v rb="${rss_of[berth-shim]}" -v rc="${rss_of[containerd-shim-runc-v2]}" \
    'BEGIN { printf "berth-shim per container: 1/%.1f of containerd-shim-runc-v2 by PSS, 1/%.1f by RSS\n", c / b, rc / rb }'
fi
