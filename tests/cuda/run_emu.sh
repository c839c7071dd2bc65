#!/usr/bin/env bash
# tests/cuda/run_emu.sh: the CUDA backend on the CPU emulation (label cuda-emu). Where the main
# build (${COCA_BUILD_DIR:-build}) has the CUDA backend, builds the emulated copies there (they
# share its CPU objects); otherwise configures ${COCA_EMU_BUILD_DIR:-build-emu} with
# -DCOCA_CUDA=EMU. Builds only what the label runs, runs it, and says how many CUDA tests ran.
# Skips (and passes) where the CUDA toolkit's headers are absent: the emulation borrows their
# types and enums (it links none of the toolkit's libraries).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${COCA_EMU_BUILD_DIR:-$root/build-emu}
if [ ! -f /usr/local/cuda/include/cuda_runtime.h ] && [ ! -f "${CUDA_HOME:-/nonexistent}/include/cuda_runtime.h" ]; then
  echo "cuda-emu: SKIPPED: no CUDA toolkit headers (/usr/local/cuda/include/cuda_runtime.h), which the emulated build needs"
  exit 0
fi
start=$(date +%s)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
main=${COCA_BUILD_DIR:-$root/build}
targets=""
if [ -z "${COCA_EMU_BUILD_DIR:-}" ] && [ -f "$main/CMakeCache.txt" ]; then
  targets=$(cmake --build "$main" --target help 2>/dev/null || true)
fi
if [[ "$targets" == *" cuda_emu_tests"* ]]; then
  # The main build has the real CUDA backend and, beside it, the emulated copies (coca_emu:
  # the same CPU objects, the .cu files built by the host compiler): build just those.
  build=$main
else
  # No CUDA compiler (or a build made without the tests): a build dir of its own with
  # COCA_CUDA=EMU, where the whole library is the emulated one.
  mkdir -p "$build"
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCOCA_CUDA=EMU -DCOCA_BUILD_TESTS=ON >"$build.configure.log" 2>&1 || {
    cat "$build.configure.log" >&2; echo "cuda-emu: cmake configure failed (log above)" >&2; exit 1; }
fi
cmake --build "$build" -j "$(nproc)" --target cuda_emu_tests
built=$(date +%s)
cd "$build"
ctest --output-on-failure -L cuda-emu --timeout 900 | tee "$build/cuda_emu_ctest.log"
done_at=$(date +%s)
ran=$(grep -Eo "[0-9]+% tests passed, [0-9]+ tests failed out of [0-9]+" "$build/cuda_emu_ctest.log" | tail -1)
echo "cuda-emu: ${ran} (CUDA tests on the CPU emulation, in $build); build $((built - start)) s, tests $((done_at - built)) s"
