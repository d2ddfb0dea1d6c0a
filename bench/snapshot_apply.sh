#!/usr/bin/env bash
# snapshot_apply.sh: how fast snapshotd unpacks an image's layers, next to containerd's own
# unpack of the same image and `gzip -dc | tar -x` of the same layers. One run (warm cache: the
# layers were just written).
#
# Generates LAYERS gzip layers of about LAYER_MB MiB uncompressed each (600 MiB in 6 by
# default): per layer, about 40% random binary files of 1 MiB (incompressible), 55% text files
# of 64 KiB (base64, compressible) and 5% files of 4 KiB, in a few directories. Then times:
#   gzip -dc L | tar -x, layer after layer into one dir     the floor, no daemon, no isolation
#   containerd (private, overlayfs): `ctr images mount` of the image imported with --no-unpack
#                                   = its unpack (prepare, apply, commit per layer) + one view;
#                                   with Go's gzip, and again with unpigz when it is installed
#   berth serial: `berth snapshot apply --parent <prev> --commit` per layer (contentd holds the
#                 blobs; snapshotd's Diff API applies them): the same chain containerd builds
#   berth parallel: every layer applied at once into its own parentless snapshot (overlay
#                 layers are independent directories; the snapshot API fixes a parent at
#                 Prepare, so this is the apply work alone, not a usable chain)
#   berth unpack: `berth snapshot unpack NAME=DIGEST...`, snapshotd's Unpacker extension: the
#                 whole chain in one call, layers applied in parallel into detached snapshots and
#                 committed in chain order: the same chain containerd builds
# and prints seconds, MB/s of uncompressed data, and ratios (time of the other / time of berth;
# above 1 means berth is faster). Everything it starts is stopped by PID, everything it made
# (and mounted) is removed.
#
# Environment: LAYERS (6), LAYER_MB (100), BUILD_DIR (<repo>/build), BENCH_TMP (/var/tmp: must
# support overlayfs upper dirs, unlike tmpfs on some kernels), KEEP=1 keeps the work dir,
# BENCH_FS (loop): "loop" runs everything on a fresh ext4 (journal on, Debian's mkfs defaults)
# in a sparse file under BENCH_TMP on a loop device, so every run starts from the same
# filesystem state; "dir" uses BENCH_TMP's own filesystem as it is. (An ext4 without a journal
# that has just deleted many files, as earlier runs do, makes every file creation scan the
# recently deleted inodes: extraction then runs 3-4x slower for a minute or more, for every
# side, and the figures say more about the filesystem than about the unpackers.)
# Runs as root (containerd and snapshotd mount).
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
LAYERS=${LAYERS:-6}
LAYER_MB=${LAYER_MB:-100}
BUILD_DIR=${BUILD_DIR:-$repo/build}
BENCH_TMP=${BENCH_TMP:-/var/tmp}
contentd_bin=$BUILD_DIR/services/contentd/contentd
snapshotd_bin=$BUILD_DIR/services/snapshotd/snapshotd
berth_bin=$BUILD_DIR/tools/berth/berth

for tool in "$contentd_bin" "$snapshotd_bin" "$berth_bin"; do
  [ -x "$tool" ] || { echo "snapshot_apply: $tool not built (set BUILD_DIR)" >&2; exit 1; }
done
for tool in containerd ctr gzip tar sha256sum base64 split; do
  command -v "$tool" >/dev/null || { echo "snapshot_apply: $tool not found" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "snapshot_apply: run as root" >&2; exit 1; }

total_mb=$(( LAYERS * LAYER_MB ))
need_kb=$(( total_mb * 1024 * 14 ))  # layers (3 copies), the floor, 2 containerds and contentd (blobs, snapshots), 3x berth
avail_kb=$(df -Pk "$BENCH_TMP" | awk 'NR==2 {print $4}')
if [ "$avail_kb" -lt "$need_kb" ]; then
  echo "snapshot_apply: need $((need_kb / 1024)) MiB free in $BENCH_TMP, have $((avail_kb / 1024))" >&2
  exit 1
fi

BENCH_FS=${BENCH_FS:-loop}
base=$(mktemp -d "$BENCH_TMP/bt-snap-XXXXXX")
work=$base
contentd_pid=
snapshotd_pid=
containerd_pid=
mounted=
loopdev=

cleanup() {
  if [ -n "$mounted" ]; then
    umount "$mounted" 2>/dev/null || true
  fi
  stop_pid "$containerd_pid"
  stop_pid "$snapshotd_pid"
  stop_pid "$contentd_pid"
  close_work_dir snapshot_apply
}
trap cleanup EXIT
trap 'exit 130' INT TERM

open_work_dir snapshot_apply $(( need_kb + 1048576 ))

declare -A seconds cpu
timed_pids=

# ---- the layers, and an OCI image of them
echo "snapshot_apply: generating $LAYERS layers of ~$LAYER_MB MiB" >&2
layout=$work/layout
image_ref=bench.local/snapshot-apply:latest
make_gzip_image "$work" "$LAYERS" "$LAYER_MB" "$image_ref"
tar -C "$layout" -cf "$work/image.tar" .
echo "snapshot_apply: $uncompressed bytes uncompressed, $compressed gzip" >&2

# ---- the floor: gzip -dc | tar -x, layer after layer
sync
floor=$work/floor
mkdir -p "$floor"
untar_all() {
  local i
  for i in $(seq "$LAYERS"); do
    gzip -dc "$work/layer$i.tar.gz" | tar -x -C "$floor"
  done
}
timeit floor untar_all

# ---- containerd: private, CRI off, overlayfs, GC off. containerd 1.6 decompresses gzip
# layers with `unpigz` when it is on PATH and with Go's compress/gzip otherwise (or with
# CONTAINERD_DISABLE_PIGZ=1): both are measured when unpigz is installed, each in a containerd
# of its own, and the ratios use the faster.
containerd_run() {  # containerd_run NAME DIR PIGZ_OFF: import, then time the unpack
  local name=$1 dir=$2
  mkdir -p "$dir"
  export CONTAINERD_DISABLE_PIGZ=$3
  start_reference_containerd "$dir"
  unset CONTAINERD_DISABLE_PIGZ
  ctrd images import --no-unpack "$work/image.tar" >/dev/null
  mkdir -p "$dir/ctd-mnt"
  sync
  containerd_unpack() {
    ctrd images mount --snapshotter overlayfs "$image_ref" "$dir/ctd-mnt" >/dev/null
    mounted=$dir/ctd-mnt
  }
  timed_pids=$containerd_pid
  timeit "$name" containerd_unpack
  timed_pids=
  [ "$(ctrd snapshots --snapshotter overlayfs ls | grep -c Committed)" -eq "$LAYERS" ] ||
    { echo "snapshot_apply: containerd did not commit $LAYERS layers" >&2; exit 1; }
  umount "$dir/ctd-mnt"; mounted=
  stop_pid "$containerd_pid"; containerd_pid=
}
containerd_run containerd_go "$work/ctd-go" true
seconds[containerd]=${seconds[containerd_go]}
cpu[containerd]=${cpu[containerd_go]}
containerd_label="containerd unpack, Go gzip (ctr images mount, overlayfs)"
if command -v unpigz >/dev/null; then
  containerd_run containerd_pigz "$work/ctd-pigz" false
  if awk -v a="${seconds[containerd_pigz]}" -v b="${seconds[containerd_go]}" 'BEGIN { exit !(a < b) }'; then
    seconds[containerd]=${seconds[containerd_pigz]}
    cpu[containerd]=${cpu[containerd_pigz]}
  fi
fi

# ---- berth: contentd holds the blobs, snapshotd applies them
csock=$work/cd.sock
ssock=$work/sd.sock
"$contentd_bin" --root "$work/cd-root" --state "$work/cd-state" --address "$csock" \
  --log-level warn > "$work/contentd.log" 2>&1 &
contentd_pid=$!
"$snapshotd_bin" --root "$work/sd-root" --state "$work/sd-state" --address "$ssock" \
  --contentd-address "$csock" --log-level warn > "$work/snapshotd.log" 2>&1 &
snapshotd_pid=$!
berth() { "$berth_bin" --contentd-address "$csock" --snapshotd-address "$ssock" -n bench "$@"; }
wait_for 20 berth content ls || { echo "contentd did not start:"; cat "$work/contentd.log"; exit 1; } >&2
wait_for 20 berth snapshot ls || { echo "snapshotd did not start:"; cat "$work/snapshotd.log"; exit 1; } >&2
for i in $(seq "$LAYERS"); do
  berth content ingest --file "$work/layer$i.tar.gz" "layer-$i" >/dev/null
done
sync

berth_serial() {
  local i parent=
  for i in $(seq "$LAYERS"); do
    berth snapshot apply ${parent:+--parent "$parent"} --commit "chain-$i" \
      "extract-$i" "${layer_digests[$((i - 1))]}" > "$work/applied-$i"
    parent=chain-$i
  done
}
timed_pids="$contentd_pid $snapshotd_pid"
timeit berth_serial berth_serial
for i in $(seq "$LAYERS"); do
  [ "$(cat "$work/applied-$i")" = "${diff_ids[$((i - 1))]}" ] ||
    { echo "snapshot_apply: layer $i applied as $(cat "$work/applied-$i"), want ${diff_ids[$((i - 1))]}" >&2; exit 1; }
done
sync

berth_parallel() {
  local i pids=()
  for i in $(seq "$LAYERS"); do
    berth snapshot apply "parallel-$i" "${layer_digests[$((i - 1))]}" > "$work/parallel-$i" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do
    wait "$pid"
  done
}
timeit berth_parallel berth_parallel
sync

berth_unpack() {
  local i args=()
  for i in $(seq "$LAYERS"); do
    args+=("unpack-chain-$i=${layer_digests[$((i - 1))]}")
  done
  berth snapshot unpack "${args[@]}" > "$work/unpacked"
}
timeit berth_unpack berth_unpack
[ "$(cat "$work/unpacked")" = "$(printf '%s\n' "${diff_ids[@]}")" ] ||
  { echo "snapshot_apply: unpack applied $(cat "$work/unpacked"), want ${diff_ids[*]}" >&2; exit 1; }
[ "$(berth snapshot ls | awk '$1 ~ /^unpack-chain-/ && $NF == "Committed"' | wc -l)" -eq "$LAYERS" ] ||
  { echo "snapshot_apply: unpack did not commit $LAYERS layers" >&2; exit 1; }

# ---- report
mbps() { awk -v b="$uncompressed" -v s="$1" 'BEGIN { printf "%.1f", b / s / 1e6 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
printf '\nsnapshot apply benchmark: %d layers, %d bytes uncompressed (%d gzip), one run, %d CPUs, %s\n' \
  "$LAYERS" "$uncompressed" "$compressed" "$(nproc)" "$(uname -r)"
row() {  # row LABEL NAME
  printf '%-58s %9s %9s %9s\n' "$1" "${seconds[$2]}" "$(mbps "${seconds[$2]}")" "${cpu[$2]}"
}
printf '%-58s %9s %9s %9s\n' "what" "seconds" "MB/s" "CPU s"
row "gzip -dc | tar -x, layer after layer (floor)" floor
row "$containerd_label" containerd_go
if [ -n "${seconds[containerd_pigz]:-}" ]; then
  row "containerd unpack, unpigz (ctr images mount, overlayfs)" containerd_pigz
fi
row "berth: snapshot apply --parent --commit, chain, serial" berth_serial
row "berth: snapshot apply, all layers at once (no chain)" berth_parallel
row "berth: unpack (parallel, chain)" berth_unpack
printf '(CPU s: user + system of the daemons serving the line and of its clients)\n'
printf '\nratios (time of the other / time of berth; above 1: berth is faster; containerd: its faster run)\n'
printf '  containerd / berth serial      %s\n' "$(ratio "${seconds[containerd]}" "${seconds[berth_serial]}")"
printf '  containerd / berth parallel    %s\n' "$(ratio "${seconds[containerd]}" "${seconds[berth_parallel]}")"
printf '  containerd / berth unpack      %s\n' "$(ratio "${seconds[containerd]}" "${seconds[berth_unpack]}")"
printf '  gzip|tar   / berth serial      %s\n' "$(ratio "${seconds[floor]}" "${seconds[berth_serial]}")"
printf '  gzip|tar   / berth parallel    %s\n' "$(ratio "${seconds[floor]}" "${seconds[berth_parallel]}")"
printf '  gzip|tar   / berth unpack      %s\n' "$(ratio "${seconds[floor]}" "${seconds[berth_unpack]}")"
printf '  CPU: containerd / berth serial %s, / berth unpack %s\n' \
  "$(ratio "${cpu[containerd]}" "${cpu[berth_serial]}")" "$(ratio "${cpu[containerd]}" "${cpu[berth_unpack]}")"
