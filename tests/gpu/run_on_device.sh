#!/usr/bin/env bash
# The GPU checks: op parity (both attention paths), model parity and training tracking,
# coca-train/coca-eval on the GPU (tests/train/test_train_cuda.sh), the training-step
# benchmark (coca at batch 128/256/512 and the largest that fits; PyTorch with SDPA and fused
# AdamW, eager and torch.compile, in the same run) and compute-sanitizer memcheck + racecheck
# on the op suite. All of it can exceed one 9-minute device call: split it with
# COCA_GPU_SECTIONS="parity train bench" and then COCA_GPU_SECTIONS=sanitizer.
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

# Sections to run (all by default; a device call has at most ~9 minutes, so the sanitizer
# runs can go in a second call): COCA_GPU_SECTIONS="parity train bench sanitizer".
SECTIONS=" ${COCA_GPU_SECTIONS:-parity train bench sanitizer} "
want() { [[ $SECTIONS == *" $1 "* ]]; }

if want parity; then
  echo "[run] op parity"
  run_bin timeout 150 "$BIN/test_cuda_ops" > "$LOGS/parity_ops.log" 2>&1
  echo "[run] op parity exit $?"
  echo "[run] model parity and 20 training steps"
  run_bin timeout 100 "$BIN/test_cuda_model" > "$LOGS/parity_model.log" 2>&1
  echo "[run] model parity exit $?"
fi

if want train; then
  echo "[run] coca-train and coca-eval on the GPU (tests/train/test_train_cuda.sh)"
  run_bin timeout 150 bash tests/train/test_train_cuda.sh "$APPS" > "$LOGS/train_cuda.log" 2>&1
  echo "[run] train_cuda exit $?"
fi

if want bench; then
  # coca at batch 128, 256, 512 and the largest that fits (ascending until a batch fails),
  # then PyTorch made as strong as users run it (SDPA, fused AdamW; eager and torch.compile)
  # at 512, all in this one run.
  echo "[run] benchmark: coca at batch 128, 256, 512"
  run_bin timeout 75 "$BIN/coca_bench_step" "$CONFIG" 128 amp_bf16 10 > "$LOGS/bench_coca.log" 2>&1
  echo "[run] coca bench exit $?"
  for b in 256 512; do
    run_bin timeout 75 "$BIN/coca_bench_step" "$CONFIG" "$b" amp_bf16 6 > "$LOGS/bench_coca_$b.log" 2>&1
    echo "[run] coca bench $b exit $?"
  done
  echo "[run] benchmark: the largest batch that fits"
  : > "$LOGS/bench_coca_largest.log"
  for b in 768 1024 1536 2048; do
    run_bin timeout 75 "$BIN/coca_bench_step" "$CONFIG" "$b" amp_bf16 3 >> "$LOGS/bench_coca_largest.log" 2>&1 || {
      echo "[bench] batch $b did not fit or failed" >> "$LOGS/bench_coca_largest.log"; break; }
  done
  echo "[run] benchmark: PyTorch eager and compiled at batch 512"
  PYTHONUNBUFFERED=1 timeout 90 python3 tests/gpu/bench_torch.py "$CONFIG" --batch 512 --steps 6 \
    > "$LOGS/bench_torch.log" 2>&1
  echo "[run] torch eager exit $?"
  PYTHONUNBUFFERED=1 timeout 200 python3 tests/gpu/bench_torch.py "$CONFIG" --batch 512 --steps 6 --compile \
    > "$LOGS/bench_torch_compile.log" 2>&1
  echo "[run] torch compile exit $?"
fi

if want sanitizer; then
  echo "[run] compute-sanitizer memcheck and racecheck on the op suite"
  COCA_CUDA_NO_CACHE=1 run_bin timeout 200 compute-sanitizer --tool memcheck --print-limit 30 --error-exitcode 3 \
    "$BIN/test_cuda_ops" --gtest_filter=-*Nccl* > "$LOGS/memcheck.log" 2>&1
  echo "[run] memcheck exit $?"
  COCA_CUDA_NO_CACHE=1 run_bin timeout 200 compute-sanitizer --tool racecheck --print-limit 30 --error-exitcode 3 \
    "$BIN/test_cuda_ops" --gtest_filter=-*Nccl* > "$LOGS/racecheck.log" 2>&1
  echo "[run] racecheck exit $?"
fi

echo "================ summary ================"
grep -h "^\[device\]" "$LOGS/parity_ops.log" 2>/dev/null
grep -h "FAIL\|Failure\|error\|Error" "$LOGS"/parity_*.log 2>/dev/null | head -40
grep -h "^\[parity\]" "$LOGS/parity_ops.log" 2>/dev/null | cut -c1-150
grep -h "tests ran\|^\[  PASSED\|^\[  FAILED" "$LOGS"/parity_*.log 2>/dev/null | head -20
grep -h "^\[parity\] model\|^\[parity\] micro\|^\[parity\] tiny\|^\[parity\] 20\|^\[train\]" "$LOGS/parity_model.log" 2>/dev/null
grep -h "ERROR SUMMARY\|PASSED\|FAILED" "$LOGS/memcheck.log" "$LOGS/racecheck.log" 2>/dev/null | tail -8
grep -h "^PASS\|^FAIL\|^SKIP\|worst\|top1" "$LOGS/train_cuda.log" 2>/dev/null
grep -h "^\[bench\] coca\|^\[bench\] batch" "$LOGS"/bench_coca*.log 2>/dev/null
grep -h "^\[bench\] torch" "$LOGS"/bench_torch*.log 2>/dev/null
grep -h "^\[profile\]\|attention\|gemm" "$LOGS/bench_coca.log" 2>/dev/null | head -20
python3 - "$LOGS" <<'PY'
import glob, re, sys
def sps(f):
    try:
        return [float(x) for x in re.findall(r"samples/s=([0-9.]+)", open(f).read())]
    except OSError:
        return []
coca = max((v for f in glob.glob(sys.argv[1] + "/bench_coca*.log") for v in sps(f)), default=None)
torch = max((v for f in glob.glob(sys.argv[1] + "/bench_torch*.log") for v in sps(f)), default=None)
if coca and torch:
    print(f"[bench] best coca {coca:.1f} samples/s / best PyTorch {torch:.1f} = {coca / torch:.3f}")
else:
    print(f"[bench] ratio unavailable (coca {coca}, torch {torch})")
PY
