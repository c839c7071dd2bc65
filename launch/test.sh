#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test this machine can run:
# labels cpu, mpi, faults, fuzz and multinode (hosts made of network namespaces; skipped
# without root) everywhere, cuda only where a GPU is present. The fuzz
# harnesses are built apart with clang (tests/fuzz/build.sh); without clang they skip.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# With PyTorch (python3-torch): the same-recipe comparison's test (tests/launch) trains the
# reference beside coca-train. The quickstart does not need it.
COCA_SETUP_TORCH=${COCA_SETUP_TORCH:-1} "$root/launch/setup.sh"
"$root/launch/build.sh" -DCOCA_BUILD_TESTS=ON "$@"
build=${COCA_BUILD_DIR:-$root/build}
labels="cpu|mpi|faults|fuzz|multinode"
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  labels="cpu|mpi|faults|fuzz|multinode|^cuda$"  # (not cuda-emu: run_emu.sh below)
fi
fuzz_rc=0
"$root/tests/fuzz/build.sh" || fuzz_rc=$?
[ $fuzz_rc = 0 ] || [ $fuzz_rc = 77 ] || { echo "test: the fuzz harnesses did not build" >&2; exit $fuzz_rc; }
# Open MPI refuses root without these; tests oversubscribe the two cores on purpose.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
echo "test: running labels ${labels}"
cd "$build"
ctest --output-on-failure -L "${labels}" --timeout 900
# The CUDA backend on the CPU emulation (label cuda-emu, built beside the CUDA backend in the
# same build dir): every commit, GPU or not. See tests/gpu/NOTES.md for what it proves.
"$root/tests/cuda/run_emu.sh"
