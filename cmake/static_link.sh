#!/usr/bin/env bash
# static_link.sh LINK-COMMAND...: runs a link command with gRPC, protobuf, abseil and their small
# companions (upb, re2, c-ares, address_sorting) taken from their static archives (.a beside the
# .so the command names) instead of the shared libraries. Set as the RULE_LAUNCH_LINK of the
# berth CLI (tools/berth/CMakeLists.txt): a short-lived command spends most of its start in the
# dynamic loader otherwise (about 20,000 symbol bindings across 60 libraries, two thirds of the
# instructions of a whole `berth run --rm`). A library without a static archive stays shared.
set -euo pipefail
args=() static=() shared=()
for arg in "$@"; do
  archive=
  if [[ $arg =~ ^(.*/lib(grpc|gpr|protobuf|absl_|upb|re2|cares|address_sorting)[^/]*)\.so(\.[0-9.]+)?$ ]]; then
    archive=${BASH_REMATCH[1]}.a
  elif [ "$arg" = -lre2 ] && [ -f /usr/lib/x86_64-linux-gnu/libre2.a ]; then
    archive=/usr/lib/x86_64-linux-gnu/libre2.a
  fi
  if [ -n "$archive" ] && [ -f "$archive" ]; then
    static+=("$archive")
    continue
  fi
  args+=("$arg")
  if [[ $arg == *.so || $arg == *.so.* || $arg == -l* ]]; then
    shared+=("$arg")
  fi
done
if [ ${#static[@]} -eq 0 ]; then
  exec "${args[@]}"
fi
# Last, after every archive of berth's own that needs them, and in one group: they reference
# each other in every direction (grpc <-> absl <-> upb). Then the shared libraries again, for
# what the archives need of them (ssl, zlib, ...).
exec "${args[@]}" -Wl,--start-group "${static[@]}" -Wl,--end-group "${shared[@]}"
