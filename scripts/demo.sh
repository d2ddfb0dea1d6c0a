#!/usr/bin/env bash
# The main job, end to end: installs what berth needs (apt), builds, then starts nats-server
# (the shipped config: a user per role, with permissions), eventd with a live `berth events`
# subscriber, contentd and snapshotd under a fresh state directory and, with the berth CLI:
#   - stores a blob, lists it, reads it back and checks the bytes, shows contentd's metrics;
#   - imports a small OCI image (made here with umoci: a static /hello) into contentd,
#     unpacks its layers into snapshots with snapshotd's Diff service, prepares a writable
#     snapshot on the top layer, mounts it and runs /hello in it with runc, which prints hello.
#   - shows the lifecycle events the daemons published on the way (content delete, snapshot
#     prepare/commit/remove) as the subscriber got them, then replays them from eventd's history.
# Then it stops everything it started and unmounts what it mounted. BERTH_DEMO_DIR keeps the
# state directory (default: a new temp dir, removed after). Needs root (mounts, runc).
# (Pulling from a registry is imaged's job and running containers execd's: both come later.)
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
mounted=()
cleanup() {
  for m in "${mounted[@]}"; do
    umount "$m" 2>/dev/null || true
  done
  runc --root "$state/runc" delete -f demo-hello >/dev/null 2>&1 || true
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
step "nats-server on 127.0.0.1:$nats_port: deploy/config/nats-server.conf (users, permissions), JetStream in $state/nats"
# The shipped file with its listener and store moved here and fresh passwords for its users.
daemon_pw=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
eventd_pw=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
sed -e '/^listen:/d' -e "s#/var/lib/berth/nats#$state/nats#" \
  -e "s/CHANGE-ME-daemon/$daemon_pw/" -e "s/CHANGE-ME-eventd/$eventd_pw/" \
  deploy/config/nats-server.conf >"$state/nats-server.conf"
nats-server -c "$state/nats-server.conf" -a 127.0.0.1 -p "$nats_port" >"$state/nats.log" 2>&1 &
pids+=($!)
wait_for nats-server bash -c "exec 3<>/dev/tcp/127.0.0.1/$nats_port"
nats_url=nats://127.0.0.1:$nats_port

esock=$state/eventd.sock
step "eventd on $esock (the BERTH_EVENTS stream: history and replay)"
"$build/services/eventd/eventd" --root "$state/eventd" --state "$state/run/eventd" \
  --address "$esock" --nats-url "$nats_url" --nats-credentials "berth-eventd:$eventd_pw" \
  >"$state/eventd.log" 2>&1 &
pids+=($!)
wait_for eventd test -S "$esock"
# A live subscriber from now on, as an operator would run one.
"$build/tools/berth/berth" --eventd-address "$esock" events >"$state/events.txt" 2>&1 &
pids+=($!)

sock=$state/contentd.sock
step "contentd on $sock (root $state/contentd, metrics 127.0.0.1:$metrics_port)"
"$build/services/contentd/contentd" --root "$state/contentd" --state "$state/run/contentd" \
  --address "$sock" --metrics-address "127.0.0.1:$metrics_port" \
  --nats-url "$nats_url" --nats-credentials "berth-daemon:$daemon_pw" >"$state/contentd.log" 2>&1 &
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

ssock=$state/snapshotd.sock
step "snapshotd on $ssock (overlayfs, root $state/snapshotd)"
"$build/services/snapshotd/snapshotd" --root "$state/snapshotd" --state "$state/run/snapshotd" \
  --address "$ssock" --contentd-address "$sock" \
  --nats-url "$nats_url" --nats-credentials "berth-daemon:$daemon_pw" \
  >"$state/snapshotd.log" 2>&1 &
pids+=($!)
wait_for snapshotd test -S "$ssock"
berth() {
  "$build/tools/berth/berth" --contentd-address "$sock" --snapshotd-address "$ssock" \
    --eventd-address "$esock" "$@"
}

step "make a small OCI image (umoci): a static /hello"
bash "$repo/integration/scripts/make-test-image.sh" "$state/image" >/dev/null
layout=$state/image
manifest_digest=$(jq -r '.manifests[0].digest' "$layout/index.json")
blob() { echo "$layout/blobs/${1%%:*}/${1#*:}"; }
manifest=$(blob "$manifest_digest")

step "import it into contentd (manifest, config, layers; digests verified on commit)"
for d in "$manifest_digest" $(jq -r '.config.digest, .layers[].digest' "$manifest"); do
  berth content ingest "import-$d" --expected-digest "$d" -f "$(blob "$d")" >/dev/null
done
berth content ls

step "unpack the layers into snapshots (snapshotd's Diff service applies each onto its parent)"
parent=""
i=0
for layer in $(jq -r '.layers[].digest' "$manifest"); do
  i=$((i + 1))
  media=$(jq -r --arg d "$layer" '.layers[] | select(.digest == $d) | .mediaType' "$manifest")
  args=(snapshot apply "layer-$i-active" "$layer" --media-type "$media" --commit "layer-$i")
  if [ -n "$parent" ]; then args+=(--parent "$parent"); fi
  berth "${args[@]}"
  parent=layer-$i
done
berth snapshot tree

step "prepare a writable snapshot on the top layer (a container rootfs), mount it, run /hello with runc"
bundle=$state/bundle
mkdir -p "$bundle/rootfs"
berth snapshot prepare hello-rootfs "$parent" >/dev/null
eval "$(berth snapshot mounts "$bundle/rootfs" hello-rootfs)"
mounted+=("$bundle/rootfs")
(cd "$bundle" && runc spec)
jq '.process.args = ["/hello"] | .process.terminal = false | .root.readonly = false' \
  "$bundle/config.json" >"$bundle/config.json.new"
mv "$bundle/config.json.new" "$bundle/config.json"
runc --root "$state/runc" run --bundle "$bundle" demo-hello

step "clean up: unmount, remove the snapshots"
umount "$bundle/rootfs"
mounted=()
berth snapshot rm hello-rootfs
for j in $(seq "$i" -1 1); do berth snapshot rm "layer-$j"; done
berth snapshot ls

step "berth events: what contentd and snapshotd published, as the live subscriber saw it"
# Each daemon stored its events in its outbox and sent them to NATS; wait until they are all in.
lines=-1
for _ in $(seq 1 50); do
  now=$(wc -l <"$state/events.txt")
  if [ "$now" = "$lines" ] && [ "$now" -gt 0 ]; then break; fi
  lines=$now
  sleep 0.2
done
cat "$state/events.txt"

step "berth events --since 1: the same history replayed, filtered to snapshot commits, as JSON"
commits=$(grep -c '/snapshot/commit' "$state/events.txt")
berth events --since 1 --count "$commits" --json 'topic=="/snapshot/commit"'

step "done: the demo's daemons stop now"
