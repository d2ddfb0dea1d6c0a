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
