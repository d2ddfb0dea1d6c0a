#!/usr/bin/env bash
# make-test-image.sh LAYOUT_DIR [TAG]
#
# Builds a tiny OCI image into the OCI layout LAYOUT_DIR (created; must not exist) under TAG
# (default "latest"), with no network: one layer holding a static /hello program (built with the
# host's C compiler, when it can link statically) and /etc/hello.txt. Its entrypoint is /hello.
# Push it with:
#   skopeo copy --dest-tls-verify=false oci:LAYOUT_DIR:TAG docker://127.0.0.1:PORT/NAME:TAG
# Prints nothing on success except umoci's own output; exits non-zero on any failure.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 LAYOUT_DIR [TAG]" >&2
  exit 2
fi
layout=$1
tag=${2:-latest}

if [ -e "$layout" ]; then
  echo "make-test-image: $layout already exists" >&2
  exit 1
fi

work=$(mktemp -d /tmp/bt-img-XXXXXX)
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/rootfs/etc"
echo "hello from berth's test image" > "$work/rootfs/etc/hello.txt"

cat > "$work/hello.c" <<'C'
#include <unistd.h>
int main(void) {
  static const char msg[] = "hello from berth\n";
  return write(1, msg, sizeof(msg) - 1) == (ssize_t)(sizeof(msg) - 1) ? 0 : 1;
}
C
cc=${CC:-cc}
if ! command -v "$cc" >/dev/null 2>&1; then
  echo "make-test-image: no C compiler ($cc); install build-essential (scripts/install-deps.sh)" >&2
  exit 1
fi
if ! "$cc" -static -Os -s -o "$work/rootfs/hello" "$work/hello.c" 2>"$work/cc.log"; then
  echo "make-test-image: cannot build a static /hello with $cc:" >&2
  cat "$work/cc.log" >&2
  exit 1
fi

umoci init --layout "$layout"
umoci new --image "$layout:$tag"
umoci insert --image "$layout:$tag" "$work/rootfs/etc" /etc
umoci insert --image "$layout:$tag" "$work/rootfs/hello" /hello
umoci config --image "$layout:$tag" --config.entrypoint /hello \
  --architecture "$(dpkg --print-architecture)" --os linux
umoci gc --layout "$layout"
