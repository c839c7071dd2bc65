#!/usr/bin/env bash
# The GPU checks in one call (about 7 minutes at most): op parity (both attention paths), model
# parity and training tracking, coca-train/coca-eval on the GPU (tests/train/test_train_cuda.sh),
# the PyTorch-vs-coca training-step benchmark, and compute-sanitizer memcheck on the op suite.
# Usage: tests/gpu/run_on_device.sh LOGDIR
# Uses binaries carried from a CPU machine in gpu_bin/ (made by tests/gpu/pack_build.sh, nvcc
# targeting sm_90) when present, else builds them here.
set -uo pipefail
LOGS=$(realpath -m "${1:-gpu_logs}")
mkdir -p "$LOGS"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
CONFIG=${COCA_BENCH_CONFIG:-$ROOT/launch/configs/coca_ViT-B-32.json}
BATCH=${COCA_BENCH_BATCH:-128}

BIN=${COCA_GPU_BIN:-$ROOT/gpu_bin}
[ ! -d "$BIN" ] && [ -f "$ROOT/gpu_bin.tgz" ] && tar xzf "$ROOT/gpu_bin.tgz" -C "$ROOT"  # from pack_build.sh
APPS=$BIN  # holds coca-train, coca-eval and tests/train/make_train_fixture
if [ ! -x "$BIN/test_cuda_ops" ]; then
  echo "[run] no carried binaries: building"
  cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DCOCA_CUDA=ON -DCOCA_BUILD_TESTS=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    > "$LOGS/build.log" 2>&1 &&
    cmake --build build-gpu -j16 --target test_cuda_ops test_cuda_model coca_bench_step coca-train coca-eval \
      make_train_fixture >> "$LOGS/build.log" 2>&1 ||
    { echo "[run] build failed, see build.log"; tail -20 "$LOGS/build.log"; }
  BIN=$ROOT/build-gpu/tests/cuda
  APPS=$ROOT/build-gpu
fi

# CUDA libraries from the toolkit, NCCL (and anything missing) from the Python wheels.
CUDA_LIBS=/usr/local/cuda/lib64:/usr/local/cuda/lib
for d in $(python3 -c "import nvidia, os; [print(os.path.join(p, s, 'lib')) for p in nvidia.__path__ for s in sorted(os.listdir(p))]" 2>/dev/null); do
  [ -d "$d" ] && CUDA_LIBS="$CUDA_LIBS:$d"
done
NCCL=$(find /usr /opt -name 'libnccl.so.2' 2>/dev/null | head -1)
[ -n "$NCCL" ] && CUDA_LIBS="$CUDA_LIBS:$(dirname "$NCCL")"
echo "[run] NCCL: ${NCCL:-not found}"
export PATH=/usr/local/cuda/bin:$PATH
export COCA_CONFIG_DIR=$ROOT/launch/configs
LIBS=$BIN/lib
[ -d "$APPS/lib" ] && LIBS=$APPS/lib
run_bin() { LD_LIBRARY_PATH="$LIBS:$CUDA_LIBS:${LD_LIBRARY_PATH:-}" "$@"; }
# Carried Open MPI (pack_build.sh): plugins and help files from gpu_bin/ompi; a process started
# without mpirun initialises as a singleton without a helper daemon.
if [ -d "$APPS/ompi/plugins" ]; then
  export OPAL_PKGLIBDIR=$APPS/ompi/plugins OMPI_MCA_mca_base_component_path=$APPS/ompi/plugins
  export OPAL_PKGDATADIR=$APPS/ompi/share OMPI_MCA_ess_singleton_isolated=1
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

{ nvidia-smi; nvcc --version; } > "$LOGS/device.txt" 2>&1
head -12 "$LOGS/device.txt"

echo "[run] op parity"
run_bin timeout 150 "$BIN/test_cuda_ops" > "$LOGS/parity_ops.log" 2>&1
echo "[run] op parity exit $?"
echo "[run] model parity and 20 training steps"
run_bin timeout 100 "$BIN/test_cuda_model" > "$LOGS/parity_model.log" 2>&1
echo "[run] model parity exit $?"

echo "[run] coca-train and coca-eval on the GPU (tests/train/test_train_cuda.sh)"
run_bin timeout 150 bash tests/train/test_train_cuda.sh "$APPS" > "$LOGS/train_cuda.log" 2>&1
echo "[run] train_cuda exit $?"

echo "[run] benchmark: coca"
run_bin timeout 75 "$BIN/coca_bench_step" "$CONFIG" "$BATCH" amp_bf16 10 > "$LOGS/bench_coca.log" 2>&1
echo "[run] coca bench exit $?"
echo "[run] benchmark: PyTorch reference"
PYTHONUNBUFFERED=1 timeout 90 python3 tests/gpu/bench_torch.py "$CONFIG" "$BATCH" amp_bf16 10 > "$LOGS/bench_torch.log" 2>&1
echo "[run] torch bench exit $?"

echo "[run] benchmark: other batch sizes and precisions"
{
  run_bin timeout 40 "$BIN/coca_bench_step" "$CONFIG" 16 amp_bf16 10
  run_bin timeout 60 "$BIN/coca_bench_step" "$CONFIG" 256 amp_bf16 6
  run_bin timeout 60 "$BIN/coca_bench_step" "$CONFIG" "$BATCH" fp32 5
  run_bin timeout 60 "$BIN/coca_bench_step" "$CONFIG" "$BATCH" tf32 5
  echo "[bench] the same amp_bf16 step with the tiled attention kernels (COCA_CUDA_ATTENTION=tiled):"
  COCA_CUDA_ATTENTION=tiled run_bin timeout 60 "$BIN/coca_bench_step" "$CONFIG" "$BATCH" amp_bf16 5
  PYTHONUNBUFFERED=1 timeout 60 python3 tests/gpu/bench_torch.py "$CONFIG" "$BATCH" fp32 5
} > "$LOGS/bench_extra.log" 2>&1
echo "[run] extra benches exit $?"

echo "[run] compute-sanitizer memcheck on the op suite"
COCA_CUDA_NO_CACHE=1 run_bin timeout 200 compute-sanitizer --tool memcheck --print-limit 30 --error-exitcode 3 "$BIN/test_cuda_ops" \
  --gtest_filter=-*Nccl* > "$LOGS/memcheck.log" 2>&1
echo "[run] memcheck exit $?"

echo "================ summary ================"
grep -h "^\[device\]" "$LOGS/parity_ops.log"
grep -h "FAIL\|Failure\|error\|Error" "$LOGS"/parity_*.log | head -40
grep -h "^\[parity\]" "$LOGS/parity_ops.log" | cut -c1-150
grep -h "tests ran\|^\[  PASSED\|^\[  FAILED" "$LOGS"/parity_*.log | head -20
grep -h "^\[parity\] model\|^\[parity\] micro\|^\[parity\] tiny\|^\[parity\] 20\|^\[train\]" "$LOGS/parity_model.log"
grep -h "ERROR SUMMARY\|PASSED\|FAILED" "$LOGS/memcheck.log" | tail -5
grep -h "^PASS\|^FAIL\|^SKIP\|worst\|top1" "$LOGS/train_cuda.log"
tail -3 "$LOGS/bench_coca.log"
tail -3 "$LOGS/bench_torch.log"
grep -h "^\[bench\]" "$LOGS/bench_extra.log"
grep -h "^\[profile\]\|attention\|gemm" "$LOGS/bench_coca.log" | head -20
python3 - "$LOGS" <<'PY'
import re, sys
def sps(f):
    try:
        m = re.search(r"samples/s=([0-9.]+)", open(f).read())
        return float(m.group(1)) if m else None
    except OSError:
        return None
c, t = sps(sys.argv[1] + "/bench_coca.log"), sps(sys.argv[1] + "/bench_torch.log")
print(f"[bench] coca/torch samples/s ratio: {c / t:.3f}" if c and t else f"[bench] ratio unavailable (coca {c}, torch {t})")
PY
