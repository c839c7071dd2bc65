#!/usr/bin/env bash
# tests/cuda/run_emu.sh: the CUDA backend on the CPU emulation (label cuda-emu). Configures
# ${COCA_EMU_BUILD_DIR:-build-emu} with -DCOCA_CUDA=EMU, builds only what the label runs, runs
# it, and says how many CUDA tests ran. Skips (and passes) where the CUDA toolkit's headers are
# absent: the emulation borrows their types and enums (it links none of the toolkit's libraries).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${COCA_EMU_BUILD_DIR:-$root/build-emu}
if [ ! -f /usr/local/cuda/include/cuda_runtime.h ] && [ ! -f "${CUDA_HOME:-/nonexistent}/include/cuda_runtime.h" ]; then
  echo "cuda-emu: SKIPPED: no CUDA toolkit headers (/usr/local/cuda/include/cuda_runtime.h), which the emulated build needs"
  exit 0
fi
start=$(date +%s)
mkdir -p "$build"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCOCA_CUDA=EMU -DCOCA_BUILD_TESTS=ON >"$build.configure.log" 2>&1 || {
  cat "$build.configure.log" >&2; echo "cuda-emu: cmake configure failed (log above)" >&2; exit 1; }
cmake --build "$build" -j "$(nproc)" --target test_cuda_ops test_cuda_model test_cuda_emu test_dist_nccl coca-train coca-eval make_train_fixture
built=$(date +%s)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
cd "$build"
ctest --output-on-failure -L cuda-emu --timeout 900 | tee "$build/cuda_emu_ctest.log"
done_at=$(date +%s)
ran=$(grep -Eo "[0-9]+% tests passed, [0-9]+ tests failed out of [0-9]+" "$build/cuda_emu_ctest.log" | tail -1)
echo "cuda-emu: ${ran} (CUDA tests on the CPU emulation); build $((built - start)) s, tests $((done_at - built)) s"
