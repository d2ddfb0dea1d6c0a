#!/usr/bin/env bash
# Configures and builds berth (Release, Ninja, ccache when present) into ${BUILD_DIR:-build}.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
generator=()
if command -v ninja >/dev/null; then
  generator=(-G Ninja)
fi
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  cmake -S . -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release
else
  cmake -S . -B "$build_dir" >/dev/null
fi
cmake --build "$build_dir" --parallel "$(nproc)"
