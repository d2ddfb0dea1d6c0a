#!/usr/bin/env bash
# run.sh: how long `run --rm <busybox image> true` takes, start to exit, with hyperfine, in one
# run:
#   runc (floor)    `runc run` of a bundle prepared once (umoci unpack of the same image, its
#                   process set to /bin/true): create, start, wait, delete; no daemon, no image,
#                   no snapshot, no stdio copies
#   ctr run --rm    a private containerd (lib.sh's start_reference_containerd: own root, state,
#                   socket, config, CRI off), `ctr run --rm` with its own --runc-root and
#                   --fifo-dir (containerd 1.6 still puts shim sockets under /run/containerd/s)
#   berth run --rm  contentd, snapshotd, imaged and execd started for the benchmark
#                   (lib.sh's start_berth_daemons), `berth run --rm`
# The image (integration/scripts/make-busybox-image.sh: the host's static busybox) is pushed
# into a docker-registry this script starts and pulled by both. Prints hyperfine's table and the
# ratios of the means. When execd cannot run a task yet the berth line is left out, saying why.
#
# Environment: RUNS (30), WARMUP (3), BUILD_DIR (<repo>/build), BENCH_TMP (/var/tmp), KEEP=1
# keeps the work dir, BASELINE_BUILD_DIR (unset): another build (say main's, before a change)
# with daemons of its own, timed in the same hyperfine run as "berth run --rm (baseline build)".
# Runs as root.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
RUNS=${RUNS:-30}
WARMUP=${WARMUP:-3}
BUILD_DIR=${BUILD_DIR:-$repo/build}
BENCH_TMP=${BENCH_TMP:-/var/tmp}
BASELINE_BUILD_DIR=${BASELINE_BUILD_DIR:-}
berth_binaries "$BUILD_DIR"

require run "$contentd_bin" "$snapshotd_bin" "$imaged_bin" "$execd_bin" "$berth_bin" \
  containerd ctr runc umoci skopeo docker-registry hyperfine jq curl python3
[ "$(id -u)" = 0 ] || { echo "run: run as root" >&2; exit 1; }

base=$(mktemp -d "$BENCH_TMP/bt-run-XXXXXX")
work=$base
registry_pid= contentd_pid= snapshotd_pid= imaged_pid= execd_pid= containerd_pid=
baseline_pids=()

cleanup() {
  local pid
  for pid in "${baseline_pids[@]}"; do
    stop_pid "$pid"
  done
  stop_everything
  close_work_dir run
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the image, in a registry
push_busybox_image run

# ---- the floor: a prepared bundle
umoci unpack --image "$work/layout:latest" "$work/bundle" > /dev/null
jq '.process.args = ["/bin/true"] | .process.terminal = false' "$work/bundle/config.json" \
  > "$work/bundle/config.new" && mv "$work/bundle/config.new" "$work/bundle/config.json"
runc_cmd="runc --root $work/runc-root run --bundle $work/bundle bench-floor"
$runc_cmd || { echo "run: the floor's runc run failed" >&2; exit 1; }

# ---- containerd
start_reference_containerd "$work"
ctrd images pull --plain-http "$image" > "$work/ctr-pull.log" 2>&1 ||
  { echo "run: ctr images pull failed:"; cat "$work/ctr-pull.log"; exit 1; } >&2
mkdir -p "$work/ctr-fifo" "$work/ctr-runc"
ctr_cmd="ctr --address $dsock -n bench run --rm --fifo-dir $work/ctr-fifo --runc-root $work/ctr-runc $image bench-ctr /bin/true"
$ctr_cmd || { echo "run: ctr run failed" >&2; exit 1; }

# ---- berth (the baseline build's daemons first, in a directory of their own)
berth_command() {  # berth_command BERTH_BIN DIR NAME: the measured command line
  echo "$1 --contentd-address $2/cd.sock --snapshotd-address $2/sd.sock --imaged-address $2/im.sock --execd-address $2/ex.sock -n bench run --rm --name $3 $image /bin/true"
}
if [ -n "$BASELINE_BUILD_DIR" ]; then
  berth_binaries "$BASELINE_BUILD_DIR"
  start_berth_daemons "$work/berth-base" execd
  baseline_pids=("$execd_pid" "$imaged_pid" "$snapshotd_pid" "$contentd_pid")
  berth pull --insecure-registry "$host" "$image" > "$work/berth-base-pull.log" 2>&1 ||
    { echo "run: berth pull (baseline) failed:"; cat "$work/berth-base-pull.log"; exit 1; } >&2
  baseline_cmd=$(berth_command "$berth_bin" "$work/berth-base" bench-base)
  berth_binaries "$BUILD_DIR"
fi
start_berth_daemons "$work/berth" execd
berth pull --insecure-registry "$host" "$image" > "$work/berth-pull.log" 2>&1 ||
  { echo "run: berth pull failed:"; cat "$work/berth-pull.log"; exit 1; } >&2
export BERTH_RUN_DIR=$work/berth-cli
berth_cmd=$(berth_command "$berth_bin" "$work/berth" bench-berth)
names=(-n runc -n "ctr run --rm")
commands=("$runc_cmd" "$ctr_cmd")
if [ -n "$BASELINE_BUILD_DIR" ]; then
  names+=(-n "berth run --rm (baseline build)")
  commands+=("$baseline_cmd")
fi
if $berth_cmd > "$work/berth-probe.log" 2>&1; then
  names+=(-n "berth run --rm")
  commands+=("$berth_cmd")
else
  echo "run: berth run does not work here yet, leaving it out:" >&2
  tail -5 "$work/berth-probe.log" >&2
fi

# ---- the measurement
hyperfine -N --runs "$RUNS" --warmup "$WARMUP" --export-json "$work/hyperfine.json" \
  "${names[@]}" "${commands[@]}"

echo
jq -r '
  (.results[] | select(.command == "runc") | .mean) as $floor |
  (.results[] | select(.command == "ctr run --rm") | .mean) as $ctr |
  .results[] |
  "\(.command): mean \(.mean * 1000 | floor) ms, \(.mean / $floor * 100 | floor / 100)x the runc floor; ctr run --rm takes \($ctr / .mean * 100 | floor / 100)x as long"
' "$work/hyperfine.json"
