#!/usr/bin/env bash
# Runs every CUDA kernel on the CPU through the host emulator (docs/cuda.md, "Emulator"): the
# sources NVRTC compiles, built with g++ under AddressSanitizer + UBSan, against the CPU
# references, each kernel alone at small and odd sizes and the whole MC plan at 16³. Needs g++
# (with libasan/libubsan) and python3 with numpy; no GPU, no CUDA toolkit.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo test -p lungseg-sys --features cuda-emu --lib cuda::
cargo test -p lungseg-sys --features cuda-emu --test cuda_emu -- --test-threads "${EMU_THREADS:-2}"
