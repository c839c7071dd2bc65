#!/usr/bin/env bash
# On the CPU machine: copy the sources, the built GPU binaries (stripped) and the shared
# libraries they need (except glibc, the driver and the CUDA toolkit's, which the GPU machine
# has) into DEST, for tests/gpu/run_on_device.sh to use there.  Usage: pack_build.sh BUILD DEST
set -euo pipefail
BUILD=$(realpath "$1")
DEST=$(realpath -m "$2")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
rm -rf "$DEST"
mkdir -p "$DEST/gpu_bin/lib"
(cd "$ROOT" && git ls-files --cached --others --exclude-standard -z | xargs -0 cp --parents -t "$DEST")
for b in test_cuda_ops test_cuda_model coca_bench_step; do
  cp "$BUILD/tests/cuda/$b" "$DEST/gpu_bin/$b"
  strip "$DEST/gpu_bin/$b"
done
skip='linux-vdso|ld-linux|libc\.so|libm\.so|libpthread|libdl\.so|librt\.so|libcuda\.so|libcudart|libcublas|libnccl|libstdc\+\+|libgcc_s'
for b in "$DEST"/gpu_bin/test_cuda_ops; do
  ldd "$b" | awk '/=> \//{print $3}' | grep -Ev "$skip" | while read -r lib; do
    cp -L "$lib" "$DEST/gpu_bin/lib/"
  done
done
du -sh "$DEST" "$DEST/gpu_bin"
