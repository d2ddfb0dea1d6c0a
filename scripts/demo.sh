#!/usr/bin/env bash
# The main job, end to end: installs what berth needs (apt), builds, then starts nats-server
# (the shipped config: a user per role, with permissions), eventd with a live `berth events`
# subscriber, contentd and snapshotd under a fresh state directory and, with the berth CLI:
#   - stores a blob, lists it, reads it back and checks the bytes, shows contentd's metrics;
#   - makes a small OCI image (umoci: a static /hello), pushes it with skopeo into a
#     docker-registry started here, starts imaged and pulls it with `berth pull` (blobs into
#     contentd, the layers unpacked by snapshotd into the image's chain, the record in imaged),
#     starts execd and runs the image with `berth run --rm` (a snapshot on the image's chain,
#     the spec from its config, a container and a task on execd, runc under berth-shim), which
#     prints hello and removes the container, its task and its snapshot again.
#   - shows the lifecycle events the daemons published on the way (content delete, snapshot
#     prepare/commit/remove, image create, container create/delete, task create/start/exit/delete) as the subscriber got them, then replays them from eventd's history.
# Then it stops everything it started. BERTH_DEMO_DIR keeps the
# state directory (default: a new temp dir, removed after). Needs root (mounts, runc).
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
  if [ -n "${xsock:-}" ] && [ -S "$xsock" ]; then
    berth rm -f demo-hello >/dev/null 2>&1 || true
  fi
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

registry_port=$(free_port)
registry=127.0.0.1:$registry_port
step "docker-registry on $registry (plain HTTP, storage in $state/registry); push the image with skopeo"
cat >"$state/registry.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $state/registry
http:
  addr: $registry
YAML
docker-registry serve "$state/registry.yml" >"$state/registry.log" 2>&1 &
pids+=($!)
wait_for docker-registry curl -fsS -o /dev/null "http://$registry/v2/"
skopeo copy --quiet --dest-tls-verify=false "oci:$state/image:latest" "docker://$registry/demo/hello:latest"

isock=$state/imaged.sock
step "imaged on $isock (image records; pulls into contentd and snapshotd)"
"$build/services/imaged/imaged" --root "$state/imaged" --state "$state/run/imaged" \
  --address "$isock" --contentd-address "$sock" --snapshotd-address "$ssock" \
  --insecure-registry "$registry" \
  --nats-url "$nats_url" --nats-credentials "berth-daemon:$daemon_pw" \
  >"$state/imaged.log" 2>&1 &
pids+=($!)
wait_for imaged test -S "$isock"
berth() {
  "$build/tools/berth/berth" --contentd-address "$sock" --snapshotd-address "$ssock" \
    --eventd-address "$esock" --imaged-address "$isock" "$@"
}

step "berth pull $registry/demo/hello:latest (resolve, download into contentd, unpack in snapshotd, record in imaged)"
berth pull --insecure-registry "$registry" "$registry/demo/hello:latest" | tee "$state/pull.txt"
manifest_digest=$(awk '$1 == "pulled" {print $3}' "$state/pull.txt")

step "what the pull left: the record (berth images ls; ctr against imaged), the blobs (contentd), the snapshot chain (snapshotd)"
berth images ls
ctr --address "$isock" images ls 2>/dev/null  # ctr's SIZE/PLATFORMS columns read contentd, not imaged
berth content ls
berth snapshot tree

xsock=$state/execd.sock
step "execd on $xsock (containers and tasks, one berth-shim per container, runc)"
"$build/services/execd/execd" --root "$state/execd" --state "$state/run/execd" \
  --address "$xsock" --contentd-address "$sock" \
  --nats-url "$nats_url" --nats-credentials "berth-daemon:$daemon_pw" \
  >"$state/execd.log" 2>&1 &
pids+=($!)
wait_for execd test -S "$xsock"
berth() {
  "$build/tools/berth/berth" --contentd-address "$sock" --snapshotd-address "$ssock" \
    --eventd-address "$esock" --imaged-address "$isock" --execd-address "$xsock" "$@"
}
export BERTH_RUN_DIR=$state/cli  # the CLI's FIFO directories and detached logs

step "berth run --rm $registry/demo/hello:latest (the image's config and chain; a snapshot on it; the spec; a container and a task on execd; runc under berth-shim; /hello's output copied back)"
berth run --rm --name demo-hello "$registry/demo/hello:latest"

step "what --rm left: no container, no task, and the image keeps its chain"
berth ps -a
berth snapshot ls

step "berth events: what contentd, snapshotd, imaged and execd published, as the live subscriber saw it"
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
