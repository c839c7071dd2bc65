#!/usr/bin/env bash
# Configures and builds into ${COCA_BUILD_DIR:-build} (Release). Extra arguments go to cmake.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${COCA_BUILD_DIR:-$root/build}
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release "$@" >"$build.configure.log" 2>&1 || {
  cat "$build.configure.log" >&2; echo "build: cmake configure failed (log above)" >&2; exit 1; }
grep -E "coca CUDA backend|OpenBLAS:" "$build.configure.log" || true
cmake --build "$build" -j "$(nproc)"
