#!/usr/bin/env bash
# Installs the Debian packages that building, testing and the quickstart need, when missing.
# Idempotent; apt-get only (as root, or through sudo). CUDA is not installed here: it is used
# when /usr/local/cuda is present.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config git
  libopenblas-dev libopenblas0-openmp libomp-dev
  libopenmpi-dev openmpi-bin
  libhdf5-dev hdf5-tools
  libboost-program-options-dev nlohmann-json3-dev
  libpng-dev libjpeg-dev libturbojpeg0-dev libwebp-dev zlib1g-dev
  libgtest-dev libbenchmark-dev
  clang libclang-rt-dev
  iproute2 nftables
  python3 python3-numpy python3-matplotlib python3-h5py
)
# COCA_SETUP_TORCH=1 (launch/test.sh sets it) adds PyTorch for the reference trainer of
# launch/compare_recipe.sh, its test and the benchmarks against PyTorch.
if [ "${COCA_SETUP_TORCH:-0}" = "1" ]; then PACKAGES+=(python3-torch); fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi
echo "setup: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup: done"
