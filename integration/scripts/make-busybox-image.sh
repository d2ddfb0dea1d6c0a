#!/usr/bin/env bash
# make-busybox-image.sh LAYOUT_DIR [TAG]
#
# Builds a small busybox OCI image into the OCI layout LAYOUT_DIR (created; must not exist)
# under TAG (default "latest"), with no network: one layer holding the host's static busybox
# (Debian's busybox-static) with a link per applet in /bin, /etc/passwd and /etc/group with
# root, nobody and a user `app` (1000:1000, also in group `staff` 50), and /tmp. Cmd is `sh`.
# Prints nothing on success except umoci's own output; exits non-zero on any failure.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 LAYOUT_DIR [TAG]" >&2
  exit 2
fi
layout=$1
tag=${2:-latest}
busybox=${BUSYBOX:-/bin/busybox}

if [ -e "$layout" ]; then
  echo "make-busybox-image: $layout already exists" >&2
  exit 1
fi
if [ ! -x "$busybox" ] || ldd "$busybox" >/dev/null 2>&1; then
  echo "make-busybox-image: $busybox is not a static busybox; install busybox-static" \
    "(scripts/install-deps.sh)" >&2
  exit 1
fi

work=$(mktemp -d /tmp/bt-bb-XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root" "$root/home/app"
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
cat > "$root/etc/passwd" <<PASSWD
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat > "$root/etc/group" <<GROUP
root:x:0:
staff:x:50:app
app:x:1000:
nogroup:x:65534:
GROUP

umoci init --layout "$layout"
umoci new --image "$layout:$tag"
umoci insert --image "$layout:$tag" "$root" /
umoci config --image "$layout:$tag" --config.cmd sh --config.env PATH=/bin \
  --architecture "$(dpkg --print-architecture)" --os linux
umoci gc --layout "$layout"
