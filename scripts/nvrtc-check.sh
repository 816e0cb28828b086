#!/usr/bin/env bash
# Compiles every CUDA kernel (lungseg-sys/src/cuda/kernels/*.cu) with NVRTC for sm_80 and sm_90
# and fails on a compile error or a register spill in the ptxas report. Needs no GPU, no
# driver, no CUDA toolkit: NVRTC comes from the PyPI wheel nvidia-cuda-nvrtc-cu12 (pinned),
# installed with pip into NVRTC_PREFIX (default target/nvrtc-wheel) when missing.
# Usage: scripts/nvrtc-check.sh [--emit DIR]   (--emit also writes prebuilt cubins to DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
NVRTC_WHEEL=${NVRTC_WHEEL:-nvidia-cuda-nvrtc-cu12==12.8.93}
NVRTC_PREFIX=${NVRTC_PREFIX:-$CARGO_TARGET_DIR/nvrtc-wheel}
lib="$NVRTC_PREFIX/nvidia/cuda_nvrtc/lib"
if [ ! -e "$lib/libnvrtc.so.12" ]; then
  echo "installing $NVRTC_WHEEL into $NVRTC_PREFIX"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps \
    --target "$NVRTC_PREFIX" "$NVRTC_WHEEL"
fi
[ -e "$lib/libnvrtc.so.12" ] || { echo "FAIL: $lib/libnvrtc.so.12 missing after install" >&2; exit 1; }
export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec cargo run --quiet -p lungseg-sys --features cuda --example nvrtc_check -- "$@"
