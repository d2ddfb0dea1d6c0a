#!/usr/bin/env bash
# The test command: installs what berth needs (apt), builds, and runs every test with ctest.
# .ci/run calls exactly this. Extra arguments go to ctest (e.g. -L unit, -R content).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
build_dir=${BUILD_DIR:-build}
ctest --test-dir "$build_dir" --output-on-failure --parallel 2 "$@"
