#!/usr/bin/env bash
# content_ingest.sh: how fast contentd takes in and hands back one big blob, next to containerd.
#
# Makes a random file (1 GiB by default), starts a private contentd and a private containerd
# (own root, state, socket and config; CRI off), and times, RUNS times each, with a fresh
# ref and the blob deleted between runs:
#   sha256sum FILE                                   the floor: read + hash, nothing stored
#   openssl dgst -sha256 FILE                        the same with OpenSSL's SHA-256 (what
#                                                    contentd uses; often faster than coreutils)
#   berth content ingest --file FILE REF             berth CLI -> contentd
#   berth content get DIGEST > /dev/null             read back from contentd
#   ctr content ingest REF < FILE   (-> contentd)    containerd's client -> contentd
#   ctr content ingest REF < FILE   (-> containerd)  containerd's client -> containerd
#   ctr content get DIGEST > /dev/null (-> containerd)
# and prints MB/s (10^6 bytes/s, best and mean of RUNS) and the ratios berth/containerd and
# berth/sha256sum. Everything it starts is stopped by PID, everything it made is removed.
#
# Environment: SIZE_MB (1024), RUNS (3), BUILD_DIR (<repo>/build), BENCH_TMP (/tmp),
# KEEP=1 keeps the work dir (logs) for a look afterwards.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
SIZE_MB=${SIZE_MB:-1024}
RUNS=${RUNS:-3}
BUILD_DIR=${BUILD_DIR:-$repo/build}
BENCH_TMP=${BENCH_TMP:-/tmp}
contentd_bin=$BUILD_DIR/services/contentd/contentd
berth_bin=$BUILD_DIR/tools/berth/berth

for tool in "$contentd_bin" "$berth_bin"; do
  [ -x "$tool" ] || { echo "content_ingest: $tool not built (set BUILD_DIR)" >&2; exit 1; }
done
for tool in containerd ctr sha256sum; do
  command -v "$tool" >/dev/null || { echo "content_ingest: $tool not found" >&2; exit 1; }
done

need_kb=$(( SIZE_MB * 1024 * 4 ))  # the file, one copy in each store, and ingest space
avail_kb=$(df -Pk "$BENCH_TMP" | awk 'NR==2 {print $4}')
if [ "$avail_kb" -lt "$need_kb" ]; then
  echo "content_ingest: need $((need_kb / 1024)) MiB free in $BENCH_TMP, have $((avail_kb / 1024))" >&2
  exit 1
fi

work=$(mktemp -d "$BENCH_TMP/bt-bench-XXXXXX")  # short: sockets live here
contentd_pid=
containerd_pid=

cleanup() {
  stop_pid "$containerd_pid"
  stop_pid "$contentd_pid"
  if [ "${KEEP:-0}" = 1 ]; then
    echo "content_ingest: work dir kept: $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# mbps BYTES SECONDS
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.1f", b / s / 1e6 }'; }

# ---- the input
file=$work/blob.bin
echo "content_ingest: writing $SIZE_MB MiB of random data to $file" >&2
head -c $(( SIZE_MB * 1024 * 1024 )) /dev/urandom > "$file"
bytes=$(stat -c %s "$file")
digest=sha256:$(sha256sum "$file" | awk '{print $1}')

# ---- contentd
csock=$work/cd.sock
"$contentd_bin" --root "$work/cd-root" --state "$work/cd-state" --address "$csock" \
  --log-level warn > "$work/contentd.log" 2>&1 &
contentd_pid=$!
wait_for 20 test -S "$csock" || { echo "contentd did not start:"; cat "$work/contentd.log"; exit 1; } >&2
berth() { "$berth_bin" --contentd-address "$csock" -n bench "$@"; }
wait_for 20 berth content ls || { echo "contentd does not answer:"; cat "$work/contentd.log"; exit 1; } >&2

# ---- containerd: private, CRI off, GC only when asked (a blob nothing references would
# otherwise be collected between ingest and read-back)
start_reference_containerd "$work"
ctrc() { ctr --address "$csock" -n bench "$@"; }

# containerd removes a blob's bytes only in GC: delete from the namespace, then run GC now
# (deleting a lease with --sync runs a collection and waits for it).
containerd_delete() {
  ctrd content rm "$digest" >/dev/null
  local lease
  lease=$(ctrd leases create | awk '{print $1}')
  ctrd leases delete --sync "$lease" >/dev/null
}

# ---- measurements: results[name] = "t1 t2 ..."
declare -A results
record() { results[$1]="${results[$1]:-} $2"; }

timeit() {  # timeit NAME CMD...: runs CMD, records its wall time
  local name=$1; shift
  local t0 t1
  t0=$(now)
  "$@"
  t1=$(now)
  record "$name" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')"
}

check_digest() {  # check_digest GOT: the store must have computed the file's digest
  if [ "$1" != "$digest" ]; then
    echo "content_ingest: digest mismatch: got '$1', want $digest" >&2
    exit 1
  fi
}

for run in $(seq "$RUNS"); do
  echo "content_ingest: run $run/$RUNS" >&2
  sync

  timeit sha256sum sh -c "sha256sum '$file' > /dev/null"
  if command -v openssl >/dev/null; then
    timeit openssl sh -c "openssl dgst -sha256 '$file' > /dev/null"
  fi

  # berth CLI -> contentd
  out=$work/out.txt
  timeit berth_ingest sh -c "'$berth_bin' --contentd-address '$csock' -n bench content ingest --file '$file' berth-run-$run > '$out'"
  check_digest "$(awk '{print $NF}' "$out" | grep -o 'sha256:[0-9a-f]*' | head -1)"
  timeit berth_get sh -c "'$berth_bin' --contentd-address '$csock' -n bench content get '$digest' > /dev/null"
  berth content rm "$digest" >/dev/null
  [ ! -e "$work/cd-root/blobs/sha256/${digest#sha256:}" ] || { echo "content_ingest: contentd kept the blob after rm" >&2; exit 1; }

  # ctr -> contentd
  timeit ctr_contentd_ingest sh -c "ctr --address '$csock' -n bench content ingest ctr-run-$run < '$file'"
  ctrc content ls -q | grep -qx "$digest" || { echo "content_ingest: ctr -> contentd did not store the blob" >&2; exit 1; }
  timeit ctr_contentd_get sh -c "ctr --address '$csock' -n bench content get '$digest' > /dev/null"
  ctrc content rm "$digest" >/dev/null

  # ctr -> containerd
  timeit containerd_ingest sh -c "ctr --address '$dsock' -n bench content ingest ctd-run-$run < '$file'"
  ctrd content ls -q | grep -qx "$digest" || { echo "content_ingest: containerd did not store the blob" >&2; exit 1; }
  timeit containerd_get sh -c "ctr --address '$dsock' -n bench content get '$digest' > /dev/null"
  containerd_delete
  [ ! -e "$work/ctd-root/io.containerd.content.v1.content/blobs/sha256/${digest#sha256:}" ] || { echo "content_ingest: containerd kept the blob after rm + gc" >&2; exit 1; }
done

# ---- report
best() { tr ' ' '\n' <<<"${results[$1]}" | grep -v '^$' | sort -g | head -1; }
mean() { tr ' ' '\n' <<<"${results[$1]}" | grep -v '^$' | awk '{s += $1; n++} END { printf "%.6f", s / n }'; }

printf '\ncontent ingest benchmark: %s bytes (%d MiB), %d runs, %s\n' "$bytes" "$SIZE_MB" "$RUNS" "$(uname -r)"
printf '%-34s %12s %12s %10s\n' "what" "best MB/s" "mean MB/s" "best s"
for name in sha256sum openssl berth_ingest berth_get ctr_contentd_ingest ctr_contentd_get containerd_ingest containerd_get; do
  case $name in
    sha256sum) label="sha256sum (floor)";;
    openssl) label="openssl dgst -sha256 (floor)";;
    berth_ingest) label="berth content ingest -> contentd";;
    berth_get) label="berth content get <- contentd";;
    ctr_contentd_ingest) label="ctr content ingest -> contentd";;
    ctr_contentd_get) label="ctr content get <- contentd";;
    containerd_ingest) label="ctr content ingest -> containerd";;
    containerd_get) label="ctr content get <- containerd";;
  esac
  [ -n "${results[$name]:-}" ] || continue
  b=$(best $name); m=$(mean $name)
  printf '%-34s %12s %12s %10.3f\n' "$label" "$(mbps "$bytes" "$b")" "$(mbps "$bytes" "$m")" "$b"
done

ratio() { awk -v a="$(best "$1")" -v b="$(best "$2")" 'BEGIN { printf "%.2f", b / a }'; }
printf '\nratios (throughput, best runs; > 1 means berth is faster):\n'
printf '  %-44s %s\n' "ingest  berth -> contentd / containerd" "$(ratio berth_ingest containerd_ingest)"
printf '  %-44s %s\n' "ingest  ctr -> contentd / ctr -> containerd" "$(ratio ctr_contentd_ingest containerd_ingest)"
printf '  %-44s %s\n' "ingest  berth -> contentd / sha256sum" "$(ratio berth_ingest sha256sum)"
if [ -n "${results[openssl]:-}" ]; then
  printf '  %-44s %s\n' "ingest  berth -> contentd / openssl sha256" "$(ratio berth_ingest openssl)"
fi
printf '  %-44s %s\n' "get     berth <- contentd / ctr <- containerd" "$(ratio berth_get containerd_get)"
printf '  %-44s %s\n' "get     ctr <- contentd / ctr <- containerd" "$(ratio ctr_contentd_get containerd_get)"
