#!/usr/bin/env bash
# What one pull of a many-small-layers image costs each berth daemon, in counts rather than wall
# time (the machine is shared and noisy): per daemon the fsync-class syscalls (strace -f -y
# attached for the pull) and the gRPC calls it served (its /metrics,
# berth_grpc_requests_total, read before and after), by method. Then the pull's wall time
# without strace.
#
#   bench/pull_counts.sh                                  # 30 layers of ~1 MiB
#   LAYERS=10 BASELINE_BUILD_DIR=/work/main/build bench/pull_counts.sh
#
# Environment: LAYERS (30), LAYER_MB (1), BUILD_DIR (<repo>/build), BASELINE_BUILD_DIR (another
# build counted the same way in the same run), IMAGED_ARGS (more flags for imaged), TIMED_RUNS
# (1: timed pulls after the counted one), BENCH_TMP, BENCH_FS, KEEP (as pull.sh).
# Needs root, docker-registry, skopeo, strace, curl, python3.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
LAYERS=${LAYERS:-30}
LAYER_MB=${LAYER_MB:-1}
BUILD_DIR=${BUILD_DIR:-$repo/build}
BENCH_TMP=${BENCH_TMP:-/var/tmp}
BENCH_FS=${BENCH_FS:-loop}
BASELINE_BUILD_DIR=${BASELINE_BUILD_DIR:-}
for tool in docker-registry skopeo strace curl python3; do
  command -v "$tool" >/dev/null || { echo "pull_counts: $tool not found" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "pull_counts: run as root" >&2; exit 1; }

base=$(mktemp -d "$BENCH_TMP/bt-counts-XXXXXX")
work=$base
registry_pid= contentd_pid= snapshotd_pid= imaged_pid= loopdev=
stop_berth() {
  stop_pid "$imaged_pid"; imaged_pid=
  stop_pid "$snapshotd_pid"; snapshotd_pid=
  stop_pid "$contentd_pid"; contentd_pid=
}
cleanup() {
  stop_berth
  stop_pid "$registry_pid"
  unmount_under "$work"
  close_work_dir pull_counts
}
trap cleanup EXIT
trap 'exit 130' INT TERM
open_work_dir pull_counts $(( LAYERS * LAYER_MB * 1024 * 10 + 524288 ))

make_gzip_image "$work/img" "$LAYERS" "$LAYER_MB" latest
mkdir -p "$work/registry"
start_registry pull_counts
host=127.0.0.1:$port
skopeo copy -q --dest-tls-verify=false "oci:$work/img/layout:latest" \
  "docker://$host/bench/small:latest" > "$work/skopeo.log" 2>&1 ||
  { echo "pull_counts: skopeo copy failed:"; cat "$work/skopeo.log"; exit 1; } >&2

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# grpc_calls PORT: "method count" per method served so far (every status code summed).
grpc_calls() {
  curl -sf "http://127.0.0.1:$1/metrics" |
    awk -F'[{}]' '/^berth_grpc_requests_total\{/ {
      match($2, /method="[^"]*"/); m = substr($2, RSTART + 8, RLENGTH - 9)
      split($3, v, " "); n[m] += v[1] } END { for (m in n) print m, n[m] }' | sort
}

count_build() {  # count_build LABEL DIR
  local label=$1 dir=$2 d=$work/$1 daemon pid mport
  berth_binaries "$dir"
  declare -A mports=([contentd]=$(free_port) [snapshotd]=$(free_port) [imaged]=$(free_port))
  contentd_args="--metrics-address 127.0.0.1:${mports[contentd]}"
  snapshotd_args="--metrics-address 127.0.0.1:${mports[snapshotd]}"
  imaged_args="--metrics-address 127.0.0.1:${mports[imaged]} ${IMAGED_ARGS:-}"
  start_berth_daemons "$d"
  declare -A pids=([contentd]=$contentd_pid [snapshotd]=$snapshotd_pid [imaged]=$imaged_pid)
  local stracers=()
  for daemon in contentd snapshotd imaged; do
    grpc_calls "${mports[$daemon]}" > "$d/$daemon.calls0"
    strace -f -y -T -qq -e trace=fsync,fdatasync,sync_file_range,syncfs -o "$d/$daemon.strace" \
      -p "${pids[$daemon]}" 2>/dev/null &
    stracers+=($!)
  done
  sleep 1  # strace attaches to every thread
  berth pull --insecure-registry "$host" "$host/bench/small:latest" > "$d/pull.out" 2>&1 ||
    { echo "pull_counts: berth pull failed:"; tail -20 "$d/pull.out"; exit 1; } >&2
  for pid in "${stracers[@]}"; do
    kill -INT "$pid"
  done
  for pid in "${stracers[@]}"; do
    wait "$pid" || true
  done
  echo "== $label ($dir): one pull of $LAYERS layers"
  for daemon in contentd snapshotd imaged; do
    grpc_calls "${mports[$daemon]}" > "$d/$daemon.calls1"
    # Per syscall and file (numbers in names folded: one line per kind of file).
    # Per syscall and file (numbers in names folded: one line per kind of file), with the
    # time spent in them (strace -T; an unfinished call's time is on its "resumed" line).
    awk '{ if (match($0, /^[0-9]+ +[a-z_]+\([0-9]+<[^>]*>/)) {
             split(substr($0, RSTART, RLENGTH), f, /[ (<>]+/); key[$1] = f[2] " " f[4] }
           if (match($0, /<[0-9.]+>$/)) { n[key[$1]]++; t[key[$1]] += substr($0, RSTART + 1, RLENGTH - 2) } }
         END { for (k in n) print n[k], k, t[k] }' "$d/$daemon.strace" |
      sed -E 's/[0-9a-f]{64}/H/g; s#/[^ ]*/(cd|sd|im)-root/#\1-root/#; s/([a-z/])[0-9]+/\1N/g' |
      awk -v who="$daemon" '{ n[$2 " " $3] += $1; s[$2 " " $3] += $4; c += $1; ts += $4 }
        END { for (k in n) printf "%-10s %5d %-55s %7.1f ms\n", who, n[k], k, s[k] * 1000
              printf "%-10s %5d %-55s %7.1f ms\n", who, c, "fsync-class calls in all", ts * 1000 }'

    join -a2 -e0 -o 2.1,1.2,2.2 "$d/$daemon.calls0" "$d/$daemon.calls1" |
      awk -v who="$daemon" '$3 - $2 > 0 { printf "%-10s   %-60s %d\n", who, $1, $3 - $2; t += $3 - $2 }
        END { printf "%-10s   %-60s %d\n", who, "(all gRPC calls)", t }'
  done
  stop_berth
  unmount_under "$d"
  rm -rf "$d"
  # The same pull without strace, for its wall time, TIMED_RUNS times.
  local t0 t1 r
  for r in $(seq "${TIMED_RUNS:-1}"); do
    start_berth_daemons "$d"
    t0=$(now)
    berth pull --insecure-registry "$host" "$host/bench/small:latest" > "$d/pull.out" 2>&1
    t1=$(now)
    echo "$label pull without strace: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }') s;" \
      "$(grep -o 'downloaded in .*' "$d/imaged.log" | tail -1)"
    stop_berth
    unmount_under "$d"
    rm -rf "$d"
  done
}

count_build berth "$BUILD_DIR"
if [ -n "$BASELINE_BUILD_DIR" ]; then
  count_build baseline "$BASELINE_BUILD_DIR"
fi
