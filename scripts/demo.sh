#!/usr/bin/env bash
# The main job, end to end: installs what berth needs (apt), builds, then starts nats-server and
# contentd under a fresh state directory, stores a blob with the berth CLI, lists it, reads it
# back and checks the bytes, shows contentd's metrics, removes the blob, and stops everything
# it started. BERTH_DEMO_DIR keeps the state directory (default: a new temp dir, removed after).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
bash scripts/install-deps.sh
bash scripts/build.sh
build=$repo/${BUILD_DIR:-build}

state=${BERTH_DEMO_DIR:-}
keep=1
if [ -z "$state" ]; then
  state=$(mktemp -d /tmp/berth-demo-XXXXXX)
  keep=0
fi
mkdir -p "$state"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ "$keep" = 0 ]; then rm -rf "$state"; fi
}
trap cleanup EXIT

free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 20000))
    if ! (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
      echo "$port"
      return
    fi
  done
}

wait_for() {  # wait_for DESCRIPTION COMMAND...
  local what=$1
  shift
  for _ in $(seq 1 100); do
    if "$@" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "demo: $what did not come up; logs in $state" >&2
  exit 1
}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

nats_port=$(free_port)
metrics_port=$(free_port)
step "nats-server on 127.0.0.1:$nats_port (JetStream in $state/nats)"
nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$state/nats" >"$state/nats.log" 2>&1 &
pids+=($!)
wait_for nats-server bash -c "exec 3<>/dev/tcp/127.0.0.1/$nats_port"

sock=$state/contentd.sock
step "contentd on $sock (root $state/contentd, metrics 127.0.0.1:$metrics_port)"
"$build/services/contentd/contentd" --root "$state/contentd" --state "$state/run/contentd" \
  --address "$sock" --metrics-address "127.0.0.1:$metrics_port" \
  --nats-url "nats://127.0.0.1:$nats_port" >"$state/contentd.log" 2>&1 &
pids+=($!)
wait_for contentd test -S "$sock"

berth() { "$build/tools/berth/berth" --contentd-address "$sock" "$@"; }

step "berth version"
berth version

step "berth content ingest"
head -c 4194304 /dev/urandom >"$state/blob"
digest=$(berth content ingest demo-blob --label demo=yes <"$state/blob")
echo "$digest"

step "berth content ls"
berth content ls

step "berth content get | cmp"
berth content get "$digest" | cmp - "$state/blob"
echo "the bytes read back are identical"

step "contentd /metrics (berth_*)"
curl -fsS "http://127.0.0.1:$metrics_port/metrics" | grep -E '^berth_(content|grpc_requests_total)' | head -n 12

step "berth content rm"
berth content rm "$digest"
berth content ls

step "done: the demo's daemons stop now"
