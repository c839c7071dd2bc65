#!/usr/bin/env bash
# Builds the fuzz harnesses with clang into ${COCA_FUZZ_BUILD_DIR:-build-fuzz} (apart from the main
# g++ build). Exit 77 (ctest's skip code) when clang or libFuzzer is missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${COCA_FUZZ_BUILD_DIR:-$root/build-fuzz}
cxx=${COCA_FUZZ_CXX:-clang++}
if ! command -v "$cxx" >/dev/null 2>&1; then
  echo "fuzz: skipped: $cxx not found (Debian: apt-get install clang libclang-rt-dev, or launch/setup.sh)"
  exit 77
fi
if ! echo 'extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long) { return 0; }' |
    "$cxx" -x c++ -fsanitize=fuzzer,address,undefined -o /dev/null - >/dev/null 2>&1; then
  echo "fuzz: skipped: $cxx cannot link libFuzzer with ASan/UBSan (Debian: apt-get install libclang-rt-dev)"
  exit 77
fi
mkdir -p "$build"
cmake -S "$root/tests/fuzz/clang" -B "$build" -DCMAKE_CXX_COMPILER="$cxx" >"$build/configure.log" 2>&1 || {
  cat "$build/configure.log" >&2; echo "fuzz: cmake configure failed (log above)" >&2; exit 1; }
cmake --build "$build" -j "${COCA_FUZZ_BUILD_JOBS:-$(nproc)}"
