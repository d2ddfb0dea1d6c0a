# Shared by the benchmark scripts (source it): process and timing helpers, and the private
# reference containerd every benchmark measures against.

stop_pid() {  # stop_pid PID: SIGTERM, wait up to 20 s, then SIGKILL
  local pid=$1 i
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 200); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

wait_for() {  # wait_for SECONDS CMD...: poll every 50 ms
  local deadline=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      return 1
    fi
    sleep 0.05
  done
}

now() { date +%s.%N; }

# start_reference_containerd WORK: a private containerd under WORK (own root, state, socket,
# config; CRI off; GC only when asked, or a blob nothing references would be collected between
# ingest and read-back). Sets dsock (its socket) and containerd_pid, defines ctrd (ctr against
# it, namespace "bench"), and waits until it answers.
start_reference_containerd() {
  local work=$1
  dsock=$work/ctd.sock
  cat > "$work/containerd.toml" <<TOML
version = 2
root = "$work/ctd-root"
state = "$work/ctd-state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$dsock"
[ttrpc]
  address = "$dsock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$work/ctd-opt"
[plugins."io.containerd.gc.v1.scheduler"]
  deletion_threshold = 0
  mutation_threshold = 1000000000
  schedule_delay = "0s"
  startup_delay = "100000h"
TOML
  containerd --config "$work/containerd.toml" > "$work/containerd.log" 2>&1 &
  containerd_pid=$!
  ctrd() { ctr --address "$dsock" -n bench "$@"; }
  wait_for 30 ctrd version || {
    echo "containerd did not start:"
    tail -20 "$work/containerd.log"
    exit 1
  } >&2
}

# make_gzip_image DIR LAYERS LAYER_MB REF_NAME: generates LAYERS gzip layers of about LAYER_MB
# MiB uncompressed each into DIR/layer<i>.tar.gz and an OCI layout of them in DIR/layout (one
# manifest, no index, the host's architecture; index.json names it REF_NAME). Per layer: about
# 40% random binary files of 1 MiB (incompressible), 55% text files of 64 KiB (base64,
# compressible) and 5% files of 4 KiB, in a few directories, plus one file of its own and a
# whiteout of the one before. Sets diff_ids, layer_digests (arrays, bottom first), config_hex,
# manifest_hex, uncompressed (bytes of the tars) and compressed (bytes of the gzip layers).
make_gzip_image() {
  local dir=$1 layers=$2 layer_mb=$3 ref_name=$4
  local layout=$dir/layout i src bin_mb text_bytes small_bytes hex size arch ids descs
  local layer_descs=()
  mkdir -p "$layout/blobs/sha256"
  diff_ids=()
  layer_digests=()
  uncompressed=0
  for i in $(seq "$layers"); do
    src=$dir/src/$i
    mkdir -p "$src/bin" "$src/text" "$src/small"
    bin_mb=$(( layer_mb * 40 / 100 ))
    text_bytes=$(( layer_mb * 1048576 * 55 / 100 ))
    small_bytes=$(( layer_mb * 1048576 * 5 / 100 ))
    head -c $(( bin_mb * 1048576 )) /dev/urandom | (cd "$src/bin" && split -b 1048576 -a 4 - b)
    head -c $(( text_bytes * 3 / 4 )) /dev/urandom | base64 -w 76 | (cd "$src/text" && split -b 65536 -a 5 - t)
    head -c $(( small_bytes * 3 / 4 )) /dev/urandom | base64 -w 76 | (cd "$src/small" && split -b 4096 -a 5 - s)
    # Each layer also deletes a file of the one before (a whiteout for the unpackers).
    echo "layer $i" > "$src/only-$i"
    if [ "$i" -gt 1 ]; then
      : > "$src/.wh.only-$(( i - 1 ))"
    fi
    tar -C "$src" -cf "$dir/layer$i.tar" .
    uncompressed=$(( uncompressed + $(stat -c %s "$dir/layer$i.tar") ))
    diff_ids+=("sha256:$(sha256sum "$dir/layer$i.tar" | awk '{print $1}')")
    gzip -6 -c "$dir/layer$i.tar" > "$dir/layer$i.tar.gz"
    rm -f "$dir/layer$i.tar"
    rm -rf "$src"
    hex=$(sha256sum "$dir/layer$i.tar.gz" | awk '{print $1}')
    size=$(stat -c %s "$dir/layer$i.tar.gz")
    cp "$dir/layer$i.tar.gz" "$layout/blobs/sha256/$hex"
    layer_digests+=("sha256:$hex")
    layer_descs+=("{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$hex\",\"size\":$size}")
  done
  arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
  ids=$(printf '"%s",' "${diff_ids[@]}"); ids=${ids%,}
  printf '{"architecture":"%s","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[%s]}}' \
    "$arch" "$ids" > "$dir/config.json"
  config_hex=$(sha256sum "$dir/config.json" | awk '{print $1}')
  cp "$dir/config.json" "$layout/blobs/sha256/$config_hex"
  descs=$(IFS=,; echo "${layer_descs[*]}")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[%s]}' \
    "$config_hex" "$(stat -c %s "$dir/config.json")" "$descs" > "$dir/manifest.json"
  manifest_hex=$(sha256sum "$dir/manifest.json" | awk '{print $1}')
  cp "$dir/manifest.json" "$layout/blobs/sha256/$manifest_hex"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
    "$manifest_hex" "$(stat -c %s "$dir/manifest.json")" "$ref_name" > "$layout/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' > "$layout/oci-layout"
  compressed=$(du -cb "$dir"/layer*.tar.gz | tail -1 | awk '{print $1}')
}

# make_loop_fs BASE SIZE_KB: a fresh ext4 (journal on, Debian's mkfs defaults) in a sparse
# BASE/fs.img on a loop device, mounted at BASE/fs. Sets loopdev. Undo with drop_loop_fs BASE.
# Why: this machine's root filesystem is ext4 without a journal; after a run has deleted many
# files, every file created in the next minutes scans the recently deleted inodes, and each
# figure then depends on what ran before it.
make_loop_fs() {
  local base=$1 size_kb=$2
  truncate -s "${size_kb}K" "$base/fs.img"
  mkfs.ext4 -q -F -m 0 "$base/fs.img"
  mkdir -p "$base/fs"
  loopdev=$(losetup --direct-io=on -f --show "$base/fs.img")
  mount "$loopdev" "$base/fs"
}
drop_loop_fs() {
  local base=$1
  umount "$base/fs" 2>/dev/null || true
  if [ -n "${loopdev:-}" ]; then
    losetup -d "$loopdev" 2>/dev/null || true
  fi
  loopdev=
}

# vm_hwm_kib PID: the process's peak resident set (VmHWM), KiB.
vm_hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

# timeit NAME CMD...: runs CMD once and records its wall time in seconds[NAME] and its CPU time
# in cpu[NAME] (the caller declares both: declare -A seconds cpu). The CPU time counts the
# processes in $timed_pids (the daemons serving the phase) and this shell's reaped children
# (the clients).
cpu_ticks() {
  local total pid
  total=$(awk '{print $14 + $15 + $16 + $17}' /proc/$$/stat)
  for pid in $timed_pids; do
    total=$(( total + $(awk '{print $14 + $15 + $16 + $17}' "/proc/$pid/stat") ))
  done
  echo "$total"
}
timeit() {  # timeit NAME CMD...: runs CMD once, records its wall time and CPU time
  local name=$1; shift
  local t0 t1 c0 c1
  c0=$(cpu_ticks)
  t0=$(now)
  "$@"
  t1=$(now)
  c1=$(cpu_ticks)
  seconds[$name]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  cpu[$name]=$(awk -v a="$c0" -v b="$c1" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", (b - a) / hz }')
}


# open_work_dir NAME NEED_KB: sets work (the dir a benchmark works in) under base: on a fresh
# ext4 loop filesystem of NEED_KB (BENCH_FS=loop, the default) or in base itself (BENCH_FS=dir).
# Exits with a message naming NAME when the tools are missing or BENCH_FS is neither.
open_work_dir() {
  local name=$1 need_kb=$2 tool
  if [ "$BENCH_FS" = loop ]; then
    for tool in mkfs.ext4 losetup; do
      command -v "$tool" >/dev/null || { echo "$name: $tool not found (or BENCH_FS=dir)" >&2; exit 1; }
    done
    make_loop_fs "$base" "$need_kb"
    work=$base/fs/work
    mkdir "$work"
  elif [ "$BENCH_FS" != dir ]; then
    echo "$name: BENCH_FS is loop or dir, not \"$BENCH_FS\"" >&2
    exit 1
  fi
}

# close_work_dir NAME: after the daemons stopped, keeps the work dir (KEEP=1, said on stderr)
# or removes it with its loop filesystem and base.
close_work_dir() {
  local name=$1
  if [ "${KEEP:-0}" = 1 ]; then
    echo "$name: work dir kept: $work${loopdev:+ (on $loopdev, mounted at $base/fs)}" >&2
    return
  fi
  if [ -n "${loopdev:-}" ]; then
    rm -rf "$work"
    drop_loop_fs "$base"
  fi
  rm -rf "$base"
}

# start_registry NAME: a docker-registry on 127.0.0.1 (a free port, plain HTTP, storage in
# $work/registry). Sets registry_pid and port; exits with a message naming NAME when it does not
# come up.
start_registry() {
  local name=$1 attempt
  for attempt in 1 2 3; do
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    cat > "$work/registry.yml" <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
YML
    docker-registry serve "$work/registry.yml" > "$work/registry.log" 2>&1 &
    registry_pid=$!
    if wait_for 20 curl -sf -o /dev/null "http://127.0.0.1:$port/v2/" && kill -0 "$registry_pid" 2>/dev/null; then
      return 0
    fi
    stop_pid "$registry_pid"; registry_pid=
  done
  echo "$name: docker-registry did not start:" >&2
  tail -20 "$work/registry.log" >&2
  exit 1
}

# berth_binaries DIR: sets contentd_bin, snapshotd_bin, imaged_bin, execd_bin and berth_bin to
# the build in DIR.
berth_binaries() {
  contentd_bin=$1/services/contentd/contentd
  snapshotd_bin=$1/services/snapshotd/snapshotd
  imaged_bin=$1/services/imaged/imaged
  execd_bin=$1/services/execd/execd
  berth_bin=$1/tools/berth/berth
}

# start_berth_daemons DIR [execd]: contentd, snapshotd and imaged (and execd with "execd") from
# $contentd_bin, $snapshotd_bin, $imaged_bin, $execd_bin (each with the flags in $contentd_args,
# $snapshotd_args, $imaged_args, when set), with roots, state dirs and sockets
# under DIR (logs DIR/<daemon>.log). Sets berth_dir (DIR), contentd_pid, snapshotd_pid, imaged_pid, execd_pid,
# defines berth (the CLI in $berth_bin against them, namespace bench) and waits until each
# daemon answers; exits with its log when one does not.
start_berth_daemons() {
  local d=$1 with=${2:-}
  berth_dir=$d
  mkdir -p "$d"
  "$contentd_bin" --root "$d/cd-root" --state "$d/cd-state" --address "$d/cd.sock" \
    --log-level warn ${contentd_args:-} > "$d/contentd.log" 2>&1 &
  contentd_pid=$!
  "$snapshotd_bin" --root "$d/sd-root" --state "$d/sd-state" --address "$d/sd.sock" \
    --contentd-address "$d/cd.sock" --log-level warn ${snapshotd_args:-} > "$d/snapshotd.log" 2>&1 &
  snapshotd_pid=$!
  "$imaged_bin" --root "$d/im-root" --state "$d/im-state" --address "$d/im.sock" \
    --contentd-address "$d/cd.sock" --snapshotd-address "$d/sd.sock" \
    --log-level info ${imaged_args:-} > "$d/imaged.log" 2>&1 &
  imaged_pid=$!
  berth() {
    "$berth_bin" --contentd-address "$berth_dir/cd.sock" --snapshotd-address "$berth_dir/sd.sock" \
      --imaged-address "$berth_dir/im.sock" --execd-address "$berth_dir/ex.sock" --timeout 600s \
      -n bench "$@"
  }
  wait_for 20 berth content ls || { echo "contentd did not start:"; cat "$d/contentd.log"; exit 1; } >&2
  wait_for 20 berth snapshot ls || { echo "snapshotd did not start:"; cat "$d/snapshotd.log"; exit 1; } >&2
  wait_for 20 ctr --address "$d/im.sock" -n bench images ls ||
    { echo "imaged did not start:"; cat "$d/imaged.log"; exit 1; } >&2
  if [ "$with" = execd ]; then
    "$execd_bin" --root "$d/ex-root" --state "$d/ex-state" --address "$d/ex.sock" \
      --contentd-address "$d/cd.sock" --log-level warn > "$d/execd.log" 2>&1 &
    execd_pid=$!
    wait_for 20 ctr --address "$d/ex.sock" -n bench containers ls ||
      { echo "execd did not start:"; cat "$d/execd.log"; exit 1; } >&2
  fi
}

# stop_everything: stops containerd, execd, imaged, snapshotd, contentd and the registry (those
# whose *_pid is set), then unmounts what is left under $work.
stop_everything() {
  local pid
  for pid in "${containerd_pid:-}" "${execd_pid:-}" "${imaged_pid:-}" "${snapshotd_pid:-}" \
    "${contentd_pid:-}" "${registry_pid:-}"; do
    stop_pid "$pid"
  done
  unmount_under "$work"
}

# unmount_under DIR: unmounts whatever is still mounted below DIR (deepest first).
unmount_under() {
  local target
  for target in $(awk -v p="$1/" 'index($2, p) == 1 {print $2}' /proc/self/mounts | sort -r); do
    umount "$target" 2>/dev/null || umount -l "$target" 2>/dev/null || true
  done
}

# require NAME FILE_OR_TOOL...: exits with a message naming NAME unless each argument is an
# executable path (a build output: "set BUILD_DIR") or a command on PATH.
require() {
  local name=$1 tool; shift
  for tool in "$@"; do
    if [[ $tool == */* ]]; then
      [ -x "$tool" ] || { echo "$name: $tool not built (set BUILD_DIR)" >&2; exit 1; }
    else
      command -v "$tool" >/dev/null || { echo "$name: $tool not found (scripts/install-deps.sh)" >&2; exit 1; }
    fi
  done
}

# push_busybox_image NAME: the busybox test image (integration/scripts/make-busybox-image.sh)
# built into $work/layout and pushed into a docker-registry started here (start_registry).
# Sets host (the registry) and image (its reference).
push_busybox_image() {
  local name=$1
  "$(dirname "${BASH_SOURCE[0]}")/../integration/scripts/make-busybox-image.sh" "$work/layout" > /dev/null
  mkdir -p "$work/registry"
  start_registry "$name"
  host=127.0.0.1:$port
  image=$host/bench/busybox:latest
  skopeo copy -q --dest-tls-verify=false "oci:$work/layout:latest" "docker://$image" \
    > "$work/skopeo.log" 2>&1 || { echo "$name: skopeo copy failed:"; cat "$work/skopeo.log"; exit 1; } >&2
}
