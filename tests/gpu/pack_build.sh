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
# Test programs at the top of gpu_bin (as before); the apps and the fixture maker where a build
# directory has them, so that tests/train/test_train_cuda.sh can take gpu_bin as its BUILD_DIR.
for b in test_cuda_ops test_cuda_model coca_bench_step; do
  cp "$BUILD/tests/cuda/$b" "$DEST/gpu_bin/$b"
done
mkdir -p "$DEST/gpu_bin/tests/train"
cp "$BUILD/coca-train" "$BUILD/coca-eval" "$DEST/gpu_bin/"
cp "$BUILD/tests/train/make_train_fixture" "$DEST/gpu_bin/tests/train/"
find "$DEST/gpu_bin" -type f -perm -u+x -exec strip {} +
skip='linux-vdso|ld-linux|libc\.so|libm\.so|libpthread|libdl\.so|librt\.so|libcuda\.so|libcudart|libcublas|libnccl|libstdc\+\+|libgcc_s'
for b in "$DEST"/gpu_bin/test_cuda_ops "$DEST"/gpu_bin/coca-train "$DEST"/gpu_bin/coca-eval; do
  ldd "$b" | awk '/=> \//{print $3}' | grep -Ev "$skip" | while read -r lib; do
    cp -L "$lib" "$DEST/gpu_bin/lib/"
  done
done
# Open MPI (the GPU machine has none): its plugins, their libraries and its help files, so that
# one process started without mpirun initialises as a singleton (run_on_device.sh points
# OPAL_PKGLIBDIR and OMPI_MCA_mca_base_component_path there).
ompi=$(dirname "$(ldd "$DEST/gpu_bin/coca-train" | awk '/libmpi\.so/{print $3}')")/openmpi/lib/openmpi3
if [ -d "$ompi" ]; then
  mkdir -p "$DEST/gpu_bin/ompi"
  cp -rL "$ompi" "$DEST/gpu_bin/ompi/plugins"
  [ -d /usr/share/openmpi ] && cp -rL /usr/share/openmpi "$DEST/gpu_bin/ompi/share"
  for f in "$ompi"/*.so; do ldd "$f" | awk '/=> \//{print $3}'; done | sort -u | grep -Ev "$skip" | while read -r lib; do
    cp -Ln "$lib" "$DEST/gpu_bin/lib/" 2>/dev/null || true
  done
else
  echo "pack_build: no Open MPI plugin directory at $ompi; coca-train may not start on the GPU machine" >&2
fi
# The device call carries at most 64 MiB: ship the binaries compressed.
tar czf "$DEST/gpu_bin.tgz" -C "$DEST" gpu_bin && rm -rf "$DEST/gpu_bin"
du -sh "$DEST" "$DEST/gpu_bin.tgz"
