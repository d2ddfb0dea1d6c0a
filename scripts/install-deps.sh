#!/usr/bin/env bash
# Installs everything berth needs to build, test and benchmark, from Debian 12's packages.
# Safe to run again; runs without standard input (CI).
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config ccache
  # core libraries
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libnats-dev libsqlite3-dev libcurl4-openssl-dev libssl-dev prometheus-cpp-dev
  libabsl-dev libarchive-dev zlib1g-dev libzstd-dev libisal-dev libtomlplusplus-dev libcli11-dev
  nlohmann-json3-dev libsystemd-dev libgtest-dev libgmock-dev
  # used directly by lib/filters (also pulled in by libgrpc++-dev; named so it is never missed)
  libre2-dev
  # real peers for tests and benchmarks
  nats-server runc containerd docker-registry skopeo umoci hyperfine valgrind pigz busybox-static
  # strace: bench/pull_counts.sh counts each daemon's fsyncs with it
  strace
  curl jq util-linux coreutils
  # python3: lib/testing's tests use it as a throwaway listener
  python3
  # openssl: the test PKI for TLS to NATS (lib/testing MakeTestPki); ca-certificates: the
  # system trust store, used when nats_tls_ca is not set
  openssl ca-certificates
  # mkfs.ext4 for bench/snapshot_apply.sh's fresh filesystem
  e2fsprogs
  # systemd-socket-activate, for the socket-activation test
  systemd
  # sqlite3: integration/gc_test.cc edits imaged's database as a crash would leave it
  sqlite3
  # conmon: the second shim reference in bench/shim_memory.sh (busybox-static, above, also
  # makes integration/scripts/make-busybox-image.sh's test image)
  conmon
  # containerd's sources and API protos, for reference; with golang-go they build containerd's
  # own Go client (GOPATH mode, offline): integration/goclient (goclient_test) and
  # integration/containerd_go_pull.go (containerd_snapshotd_test)
  golang-github-containerd-containerd-dev golang-go
)

if [ "$(id -u)" -ne 0 ]; then
  sudo=sudo
else
  sudo=
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null

# Debian's containerd package enables and starts its own containerd service. berth's tests
# start private containerd instances and never need the system one; leave it as the package
# set it up.
